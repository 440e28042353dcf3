"""Physics of G(r): the Debye calculator, PDF data files and Rw."""
