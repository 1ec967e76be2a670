"""Sample solutions for the code parts of the bundled exercise bank.

Every function named by an exercise's `entry` is defined here; the grader imports this
file and calls them. The shapes come from the arrays passed in, never hard-coded.
Most are correct; backward_tanh_mse carries a classic bug on purpose (it forgets the
derivative of tanh), so the sample report shows how a wrong gradient is explained.
"""
import math

import numpy as np


# ---------------------------------------------------------------- gaussian-in-code

def dydx(x):
    """d/dx e^(-x^2/2) = -x e^(-x^2/2)."""
    return -x * math.exp(-x * x / 2)


# ---------------------------------------------------------------- gradient-in-code

def grad(x, y):
    """The gradient of ln(1 + e^(xy)): the sigmoid of xy times the inner gradient (y, x)."""
    s = 1.0 / (1.0 + math.exp(-x * y))
    return [y * s, x * s]


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


# ---------------------------------------------------------------- softmax-regression

def backward_softmax_regression(params, x, y):
    W1, b1 = params["W1"], params["b1"]
    out = x @ W1 + b1
    shifted = out - out.max(axis=1, keepdims=True)
    p = np.exp(shifted)
    p /= p.sum(axis=1, keepdims=True)
    onehot = np.zeros_like(p)
    onehot[np.arange(len(y)), y] = 1.0
    dout = (p - onehot) / len(y)
    return {"W1": x.T @ dout, "b1": dout.sum(axis=0)}


# ---------------------------------------------------------------- mlp-sigmoid-mse

def backward_sigmoid_mse(params, x, y):
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    z1 = x @ W1 + b1
    h1 = 1.0 / (1.0 + np.exp(-z1))
    out = h1 @ W2 + b2
    dout = 2.0 * (out - y) / out.size
    dz1 = (dout @ W2.T) * h1 * (1.0 - h1)
    return {"W1": x.T @ dz1, "b1": dz1.sum(axis=0), "W2": h1.T @ dout, "b2": dout.sum(axis=0)}


# ---------------------------------------------------------------- mlp-tanh-mse

def backward_tanh_mse(params, x, y):
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    z1 = x @ W1 + b1
    h1 = np.tanh(z1)
    out = h1 @ W2 + b2
    dout = 2.0 * (out - y) / out.size
    dz1 = dout @ W2.T                  # (bug: no tanh'(z1) factor)
    return {"W1": x.T @ dz1, "b1": dz1.sum(axis=0), "W2": h1.T @ dout, "b2": dout.sum(axis=0)}


# ---------------------------------------------------------------- mlp-relu-softmax

def backward_relu_softmax(params, x, y):
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    z1 = x @ W1 + b1
    h1 = np.maximum(z1, 0.0)
    out = h1 @ W2 + b2
    p = np.exp(out - out.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1.0
    dout = p / len(y)
    dz1 = (dout @ W2.T) * (z1 > 0)
    return {"W1": x.T @ dz1, "b1": dz1.sum(axis=0), "W2": h1.T @ dout, "b2": dout.sum(axis=0)}


# ---------------------------------------------------------------- mlp-softplus-square

def backward_softplus_square(params, x, y):
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    z1 = x @ W1 + b1
    h1 = np.logaddexp(0.0, z1)          # softplus, computed stably
    out = h1 @ W2 + b2
    dout = 2.0 * (out - y) / out.size
    dz1 = (dout @ W2.T) / (1.0 + np.exp(-z1))   # softplus' = sigmoid
    return {"W1": x.T @ dz1, "b1": dz1.sum(axis=0), "W2": h1.T @ dout, "b2": dout.sum(axis=0)}


# ---------------------------------------------------------------- deep-linear-network

def backward_deep_linear(params, x, y):
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    h1 = x @ W1 + b1                    # identity activation: h1 = z1
    out = h1 @ W2 + b2
    dout = 2.0 * (out - y) / out.size
    dh1 = dout @ W2.T                   # identity' = 1
    return {"W1": x.T @ dh1, "b1": dh1.sum(axis=0), "W2": h1.T @ dout, "b2": dout.sum(axis=0)}


# ---------------------------------------------------------------- three-layer-tanh-relu

def backward_tanh_relu(params, x, y):
    W1, b1 = params["W1"], params["b1"]
    W2, b2 = params["W2"], params["b2"]
    W3, b3 = params["W3"], params["b3"]
    z1 = x @ W1 + b1
    h1 = np.tanh(z1)
    z2 = h1 @ W2 + b2
    h2 = np.maximum(z2, 0.0)
    out = h2 @ W3 + b3
    dout = 2.0 * (out - y) / out.size
    dz2 = (dout @ W3.T) * (z2 > 0)
    dz1 = (dz2 @ W2.T) * (1.0 - h1**2)
    return {
        "W1": x.T @ dz1, "b1": dz1.sum(axis=0),
        "W2": h1.T @ dz2, "b2": dz2.sum(axis=0),
        "W3": h2.T @ dout, "b3": dout.sum(axis=0),
    }


# ---------------------------------------------------------------- three-layer-sigmoid-softmax

def backward_sigmoid_softmax(params, x, y):
    W1, b1 = params["W1"], params["b1"]
    W2, b2 = params["W2"], params["b2"]
    W3, b3 = params["W3"], params["b3"]
    h1 = sigmoid(x @ W1 + b1)
    h2 = sigmoid(h1 @ W2 + b2)
    out = h2 @ W3 + b3
    p = np.exp(out - out.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    onehot = np.eye(out.shape[1])[y]
    dout = (p - onehot) / len(y)
    dz2 = (dout @ W3.T) * h2 * (1.0 - h2)
    dz1 = (dz2 @ W2.T) * h1 * (1.0 - h1)
    return {
        "W1": x.T @ dz1, "b1": dz1.sum(axis=0),
        "W2": h1.T @ dz2, "b2": dz2.sum(axis=0),
        "W3": h2.T @ dout, "b3": dout.sum(axis=0),
    }


# ---------------------------------------------------------------- three-layer-softplus-relu

def backward_softplus_relu(params, x, y):
    W1, b1 = params["W1"], params["b1"]
    W2, b2 = params["W2"], params["b2"]
    W3, b3 = params["W3"], params["b3"]
    z1 = x @ W1 + b1
    h1 = np.logaddexp(0.0, z1)
    z2 = h1 @ W2 + b2
    h2 = np.where(z2 > 0, z2, 0.0)
    out = h2 @ W3 + b3
    p = np.exp(out - out.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1.0
    dout = p / len(y)
    dz2 = (dout @ W3.T) * (z2 > 0)
    dz1 = (dz2 @ W2.T) / (1.0 + np.exp(-z1))
    return {
        "W1": x.T @ dz1, "b1": dz1.sum(axis=0),
        "W2": h1.T @ dz2, "b2": dz2.sum(axis=0),
        "W3": h2.T @ dout, "b3": dout.sum(axis=0),
    }


# ---------------------------------------------------------------- network-step-sigmoid

def step_sigmoid_mse(params, x, y, lr):
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    h1 = 1.0 / (1.0 + np.exp(-(x @ W1 + b1)))
    out = h1 @ W2 + b2
    dout = 2.0 * (out - y) / out.size
    dz1 = (dout @ W2.T) * h1 * (1.0 - h1)
    grads = {"W1": x.T @ dz1, "b1": dz1.sum(axis=0), "W2": h1.T @ dout, "b2": dout.sum(axis=0)}
    return {key: params[key] - lr * grads[key] for key in params}


# ---------------------------------------------------------------- network-step-softmax

def step_relu_softmax(params, x, y, lr):
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    z1 = x @ W1 + b1
    h1 = np.maximum(z1, 0.0)
    out = h1 @ W2 + b2
    p = np.exp(out - out.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1.0
    dout = p / len(y)
    dz1 = (dout @ W2.T) * (z1 > 0)
    grads = {"W1": x.T @ dz1, "b1": dz1.sum(axis=0), "W2": h1.T @ dout, "b2": dout.sum(axis=0)}
    return {key: params[key] - lr * grads[key] for key in params}
