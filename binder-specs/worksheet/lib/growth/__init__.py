def logistic(t, k, r, n0):
    import math
    return k / (1 + (k - n0) / n0 * math.exp(-r * t))
