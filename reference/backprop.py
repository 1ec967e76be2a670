"""The reference network engine: float64 numpy backpropagation, written as it is taught.

Every piece (activation, linear layer, loss) knows only its own local derivative, and
`Network.backward` chains them in reverse, layer by layer. The pieces are small frozen
dataclasses so a sibling module can build a mistaken network by swapping one piece for a
variant and running the very same backward loop.

The forward pass is dtype-agnostic (it also runs on complex arrays) so tests can check the
gradients with the complex-step derivative; branches such as ReLU's kink are decided on
the real part.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

RELU_MARGIN = 1e-3
"""How far every ReLU pre-activation in a sampled batch stays from the kink at 0."""

SAMPLE_ROUNDS = 100
"""How many times `sample_batch` redraws offending rows before giving up."""


@dataclass(frozen=True)
class ActivationFn:
    """An elementwise nonlinearity together with its derivative w.r.t. the pre-activation z."""

    name: str
    f: Callable[[np.ndarray], np.ndarray]
    df: Callable[[np.ndarray], np.ndarray]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    # The tanh form never overflows for large |z| and also accepts complex input.
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _d_sigmoid(z: np.ndarray) -> np.ndarray:
    s = _sigmoid(z)
    return s * (1.0 - s)


def _d_tanh(z: np.ndarray) -> np.ndarray:
    return 1.0 - np.tanh(z) ** 2


def _relu(z: np.ndarray) -> np.ndarray:
    # Branch on the real part: np.maximum would order complex numbers lexicographically.
    return np.where(z.real > 0, z, 0.0)


def _d_relu(z: np.ndarray) -> np.ndarray:
    return np.where(z.real > 0, 1.0, 0.0)


def _softplus(z: np.ndarray) -> np.ndarray:
    # log(1 + e^z) = relu(z) + log(1 + e^-|z|); |z| is taken as the analytic branch
    # chosen by the sign of the real part, so the formula stays stable and complex-capable.
    magnitude = np.where(z.real > 0, z, -z)
    return _relu(z) + np.log1p(np.exp(-magnitude))


def _identity(z: np.ndarray) -> np.ndarray:
    return z


def _d_identity(z: np.ndarray) -> np.ndarray:
    return np.ones_like(z)


ACTIVATIONS: dict[str, ActivationFn] = {
    "sigmoid": ActivationFn("sigmoid", _sigmoid, _d_sigmoid),
    "tanh": ActivationFn("tanh", np.tanh, _d_tanh),
    "relu": ActivationFn("relu", _relu, _d_relu),
    "identity": ActivationFn("identity", _identity, _d_identity),
    "softplus": ActivationFn("softplus", _softplus, _sigmoid),
}

LOSSES: tuple[str, ...] = ("mse", "softmax_cross_entropy")


def log_softmax(out: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax, shifted by the row maximum so large logits never overflow."""
    shifted = out - out.real.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax(out: np.ndarray) -> np.ndarray:
    """Row-wise softmax, computed through the stable log-softmax."""
    return np.exp(log_softmax(out))


def one_hot(labels: np.ndarray, classes: int) -> np.ndarray:
    """The (batch, classes) indicator matrix of integer labels."""
    encoded = np.zeros((len(labels), classes))
    encoded[np.arange(len(labels)), labels] = 1.0
    return encoded


@dataclass(frozen=True)
class Linear:
    """The affine map h @ W + b; layer `index` (1-based) owns W{index} and b{index}."""

    index: int
    inputs: int
    outputs: int

    @property
    def weight(self) -> str:
        return f"W{self.index}"

    @property
    def bias(self) -> str:
        return f"b{self.index}"

    def forward(self, h: np.ndarray, params: Mapping[str, np.ndarray]) -> np.ndarray:
        return h @ params[self.weight] + params[self.bias]

    def backward(
        self, grad_out: np.ndarray, h: np.ndarray, params: Mapping[str, np.ndarray]
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Return dL/dh and this layer's parameter gradients, given dL/d(output) and the input h."""
        grad_h = grad_out @ params[self.weight].T
        grads = {self.weight: h.T @ grad_out, self.bias: grad_out.sum(axis=0)}
        return grad_h, grads


@dataclass(frozen=True)
class Activation:
    """An elementwise activation layer; its backward needs the pre-activation z it received."""

    fn: ActivationFn

    def forward(self, z: np.ndarray) -> np.ndarray:
        return self.fn.f(z)

    def backward(self, grad_out: np.ndarray, z: np.ndarray) -> np.ndarray:
        return grad_out * self.fn.df(z)


@dataclass(frozen=True)
class Loss:
    """A batch-mean loss of the network output against the targets y."""

    name: str

    def __post_init__(self) -> None:
        if self.name not in LOSSES:
            raise ValueError(f"unknown loss {self.name!r}; expected one of {', '.join(LOSSES)}")

    def forward(self, out: np.ndarray, y: np.ndarray) -> float:
        """The loss value; a Python complex instead of a float when `out` is complex."""
        if self.name == "mse":
            return np.mean((out - y) ** 2).item()
        picked = log_softmax(out)[np.arange(len(y)), y]
        return -np.mean(picked).item()

    def backward(self, out: np.ndarray, y: np.ndarray) -> np.ndarray:
        """dLoss/dout, including the 1/N of the mean (and mse's factor 2)."""
        if self.name == "mse":
            return 2.0 * (out - y) / out.size
        return (softmax(out) - one_hot(y, out.shape[1])) / len(y)


Layer = Linear | Activation


@dataclass(frozen=True)
class Network:
    """A stack of linear and activation layers under a loss."""

    inputs: int
    layers: tuple[Layer, ...]
    loss: Loss

    @classmethod
    def from_spec(
        cls, inputs: int, layers: Sequence[Mapping[str, int | str]], loss: str
    ) -> Network:
        """Build a network from the product's spec; a malformed spec gets a plain ValueError."""
        if not _is_positive_int(inputs):
            raise ValueError(f"inputs must be a positive integer, got {inputs!r}")
        built: list[Layer] = []
        width = inputs
        for position, spec in enumerate(layers, start=1):
            if not isinstance(spec, Mapping) or len(spec) != 1:
                raise ValueError(
                    f"layer {position} must be a single {{'linear': n}} or {{'activation': name}}, "
                    f"got {spec!r}"
                )
            kind, value = next(iter(spec.items()))
            if kind == "linear":
                if not _is_positive_int(value):
                    raise ValueError(
                        f"layer {position}: linear size must be a positive integer, got {value!r}"
                    )
                index = sum(isinstance(layer, Linear) for layer in built) + 1
                built.append(Linear(index, width, int(value)))
                width = int(value)
            elif kind == "activation":
                if not isinstance(value, str) or value not in ACTIVATIONS:
                    raise ValueError(
                        f"layer {position}: unknown activation {value!r}; "
                        f"expected one of {', '.join(ACTIVATIONS)}"
                    )
                built.append(Activation(ACTIVATIONS[value]))
            else:
                raise ValueError(
                    f"layer {position}: unknown layer kind {kind!r}; "
                    "expected 'linear' or 'activation'"
                )
        if not any(isinstance(layer, Linear) for layer in built):
            raise ValueError("a network needs at least one linear layer")
        network = cls(int(inputs), tuple(built), Loss(loss))
        if loss == "softmax_cross_entropy" and network.outputs < 2:
            raise ValueError(
                "softmax_cross_entropy needs at least 2 outputs; "
                "with one class the loss is constant"
            )
        return network

    def linears(self) -> list[Linear]:
        """The linear layers, in order; they alone own parameters."""
        return [layer for layer in self.layers if isinstance(layer, Linear)]

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shapes of every parameter, in the order W1, b1, W2, b2, ..."""
        shapes: dict[str, tuple[int, ...]] = {}
        for layer in self.linears():
            shapes[layer.weight] = (layer.inputs, layer.outputs)
            shapes[layer.bias] = (layer.outputs,)
        return shapes

    @property
    def outputs(self) -> int:
        linears = self.linears()
        return linears[-1].outputs if linears else self.inputs

    def trace(self, params: Mapping[str, np.ndarray], x: np.ndarray) -> list[np.ndarray]:
        """The tape: tape[i] is the input of layer i, and the final output comes last."""
        tape = [np.asarray(x)]
        for layer in self.layers:
            h = tape[-1]
            tape.append(layer.forward(h, params) if isinstance(layer, Linear) else layer.forward(h))
        return tape

    def forward(
        self, params: Mapping[str, np.ndarray], x: np.ndarray, y: np.ndarray
    ) -> tuple[float, list[np.ndarray]]:
        """The loss and the tape (see `trace`); the loss is complex when params are complex."""
        tape = self.trace(params, x)
        return self.loss.forward(tape[-1], y), tape

    def cached_input(self, tape: Sequence[np.ndarray], position: int) -> np.ndarray:
        """The cached array layer `position` differentiates with: its input on the forward pass.

        Kept as its own method so a variant can hand a layer the wrong cache.
        """
        return tape[position]

    def backward(
        self, params: Mapping[str, np.ndarray], x: np.ndarray, y: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Gradients of the loss for every parameter, by the chain rule from the loss down."""
        _, tape = self.forward(params, x, y)
        grad = self.loss.backward(tape[-1], y)
        grads: dict[str, np.ndarray] = {}
        for position in reversed(range(len(self.layers))):
            layer = self.layers[position]
            received = self.cached_input(tape, position)
            if isinstance(layer, Linear):
                grad, layer_grads = layer.backward(grad, received, params)
                grads.update(layer_grads)
            else:
                grad = layer.backward(grad, received)
        return {key: grads[key] for key in self.param_shapes()}

    def loss_value(self, params: Mapping[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> float:
        """The loss alone, for real parameters; what finite differences probe."""
        return float(self.forward(params, x, y)[0])


def _is_positive_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1


def init_params(network: Network, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Weights ~ N(0, std 1/sqrt(fan_in)); |biases| in [0.05, 0.2] so bias mistakes show."""
    params: dict[str, np.ndarray] = {}
    for layer in network.linears():
        scale = 1.0 / np.sqrt(layer.inputs)
        params[layer.weight] = rng.normal(0.0, scale, (layer.inputs, layer.outputs))
        signs = rng.choice([-1.0, 1.0], size=layer.outputs)
        params[layer.bias] = signs * rng.uniform(0.05, 0.2, size=layer.outputs)
    return params


def _relu_margins(network: Network, params: Mapping[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Per row of x, the smallest |pre-activation| over ReLU inputs that can move (inf if none).

    An entry clipped to exactly 0 by an earlier ReLU stays 0 under small perturbations and its
    gradient is already cut there, so a later ReLU's kink cannot matter for it: it is exempt.
    Without this, stacks like relu -> relu would demand every unit be positive in every row.
    """
    tape = network.trace(params, x)
    margins = np.full(len(x), np.inf)
    clipped = np.zeros(tape[0].shape, dtype=bool)
    for position, layer in enumerate(network.layers):
        if isinstance(layer, Linear):
            clipped = np.zeros(tape[position + 1].shape, dtype=bool)
        elif layer.fn.name == "relu":
            z = tape[position]
            distance = np.where(clipped, np.inf, np.abs(z))
            margins = np.minimum(margins, distance.min(axis=1))
            clipped = clipped | (z < 0)
    return margins


def sample_batch(
    network: Network, batch: int, rng: np.random.Generator, params: Mapping[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Draw inputs and targets, keeping every ReLU pre-activation RELU_MARGIN away from its kink.

    Entries an earlier ReLU already clipped to 0 are exempt (see `_relu_margins`). Rows are
    independent, so only offending rows are redrawn; after SAMPLE_ROUNDS rounds a RuntimeError
    says the parameters pin a pre-activation near 0.
    """
    if network.loss.name == "mse":
        y = rng.normal(size=(batch, network.outputs))
    else:
        y = rng.integers(0, network.outputs, size=batch)
    x = rng.normal(size=(batch, network.inputs))
    for _ in range(SAMPLE_ROUNDS):
        bad = _relu_margins(network, params, x) < RELU_MARGIN
        if not bad.any():
            return x, y
        x[bad] = rng.normal(size=(int(bad.sum()), network.inputs))
    raise RuntimeError(
        f"could not draw inputs keeping every ReLU pre-activation {RELU_MARGIN} away from 0 "
        f"in {SAMPLE_ROUNDS} rounds; the parameters pin one near 0"
    )


def numerical_gradient(
    network: Network,
    params: Mapping[str, np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    eps: float = 1e-6,
) -> dict[str, np.ndarray]:
    """Central differences of the loss, one entry at a time: an oracle independent of backward."""
    probe = {key: np.array(value, dtype=float) for key, value in params.items()}
    grads: dict[str, np.ndarray] = {}
    for key in network.param_shapes():
        entries = probe[key]
        grad = np.zeros_like(entries)
        for index in np.ndindex(entries.shape):
            original = entries[index]
            entries[index] = original + eps
            above = network.loss_value(probe, x, y)
            entries[index] = original - eps
            below = network.loss_value(probe, x, y)
            entries[index] = original
            grad[index] = (above - below) / (2.0 * eps)
        grads[key] = grad
    return grads


def gradient_step(
    params: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray], lr: float
) -> dict[str, np.ndarray]:
    """One step of gradient descent, returning new arrays and leaving the inputs untouched."""
    if set(params) != set(grads):
        raise ValueError(
            f"params and grads name different arrays: {sorted(params)} vs {sorted(grads)}"
        )
    return {key: params[key] - lr * grads[key] for key in params}


_DERIVATIVE_TEXT: dict[str, str] = {
    "sigmoid": "sigmoid'(z) = s(z)(1 - s(z))",
    "tanh": "tanh'(z) = 1 - tanh(z)^2",
    "relu": "relu'(z) = 1 if z > 0 else 0",
    "identity": "identity'(z) = 1",
    "softplus": "softplus'(z) = s(z) = 1 / (1 + e^-z)",
}

_LOSS_TEXT: dict[str, str] = {
    "mse": "dL/dout = 2 (out - y) / N   (mse, mean over all N elements)",
    "softmax_cross_entropy": (
        "dL/dout = (softmax(out) - onehot(y)) / B   "
        "(softmax cross-entropy, mean over the B examples)"
    ),
}


def tape_names(network: Network) -> list[str]:
    """Names of the values a forward pass records: x, then z_k after linear k, h_k (h_k_2, ...
    if stacked) after activations; feedback and worked solutions use the same names."""
    names = ["x"]
    linears_seen = 0
    for layer in network.layers:
        if isinstance(layer, Linear):
            linears_seen = layer.index
            names.append(f"z{layer.index}")
        else:
            name, repeat = f"h{linears_seen}", 1
            while name in names:
                repeat += 1
                name = f"h{linears_seen}_{repeat}"
            names.append(name)
    return names


def explain(network: Network) -> list[str]:
    """The worked solution: the forward pass, then each layer's local derivative, loss first."""
    names = tape_names(network)
    steps = []
    for position, layer in enumerate(network.layers):
        received, produced = names[position], names[position + 1]
        if isinstance(layer, Linear):
            steps.append(f"{produced} = {received} @ {layer.weight} + {layer.bias}")
        else:
            steps.append(f"{produced} = {layer.fn.name}({received})")
    lines = [
        "Forward: " + ", ".join(steps),
        f"out = {names[-1]},  L = {network.loss.name}(out, y)",
        _LOSS_TEXT[network.loss.name],
    ]
    upstream = "dL/dout"
    pending: list[str] = []
    for position in reversed(range(len(network.layers))):
        layer = network.layers[position]
        received = names[position]
        if isinstance(layer, Linear):
            delta = f"delta{layer.index}"
            definitions = "".join(f", {text}" for text in pending)
            lines.append(f"{delta} = dL/d{names[position + 1]} = {upstream}{definitions}")
            lines.append(f"dL/d{layer.weight} = {received}^T @ {delta}")
            lines.append(f"dL/d{layer.bias} = sum over the batch of {delta}")
            upstream = f"({delta} @ {layer.weight}^T)"
            pending = []
        else:
            upstream = f"{upstream} * {layer.fn.name}'({received})"
            text = _DERIVATIVE_TEXT[layer.fn.name]
            if text not in pending:
                pending.append(text)
    return lines
