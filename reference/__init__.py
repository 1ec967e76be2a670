"""The reference chain-rule implementation: the ground floor, imports only sympy and numpy."""
