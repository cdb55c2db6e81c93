"""A 2-D quadratic chi2 with its minimum 0 at a = 0.5, b = -1, for the step tests."""


def chi2(a, b):
    return (a - 0.5) ** 2 + (b + 1.0) ** 2
