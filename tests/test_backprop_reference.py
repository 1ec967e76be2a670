"""The reference backprop engine checked against finite differences and the complex step."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reference.backprop import (
    ACTIVATIONS,
    LOSSES,
    RELU_MARGIN,
    Activation,
    ActivationFn,
    Linear,
    Loss,
    Network,
    explain,
    gradient_step,
    init_params,
    numerical_gradient,
    sample_batch,
)

COMPLEX_STEP = 1e-20
INPUTS = 3
OUTPUTS = 3
BATCH = 5


def _architecture(name: str, activation: str) -> list[dict[str, int | str]]:
    if name == "two_linear":
        return [{"linear": 4}, {"activation": activation}, {"linear": OUTPUTS}]
    return [
        {"linear": 4},
        {"activation": activation},
        {"linear": 4},  # W2 is 4 x 4: a transposed dW would have the right shape here
        {"activation": activation},
        {"linear": OUTPUTS},
    ]


def _setup(layers, loss: str, inputs: int = INPUTS, batch: int = BATCH, seed: int = 0):
    network = Network.from_spec(inputs, layers, loss)
    rng = np.random.default_rng(seed)
    params = init_params(network, rng)
    x, y = sample_batch(network, batch, rng, params)
    return network, params, x, y


def complex_step_gradient(network: Network, params, x, y) -> dict[str, np.ndarray]:
    """dL/dp = Im(L(p + ih)) / h: no subtraction, so exact to rounding; independent of backward."""
    grads = {}
    for key, value in params.items():
        grad = np.zeros_like(value)
        for index in np.ndindex(value.shape):
            probe = {name: array.astype(complex) for name, array in params.items()}
            probe[key][index] += 1j * COMPLEX_STEP
            loss, _ = network.forward(probe, x, y)
            grad[index] = loss.imag / COMPLEX_STEP
        grads[key] = grad
    return grads


def assert_grads_close(actual, expected, rtol: float, atol: float) -> None:
    assert list(actual) == list(expected)
    for key in expected:
        assert actual[key].shape == expected[key].shape, key
        np.testing.assert_allclose(actual[key], expected[key], rtol=rtol, atol=atol, err_msg=key)


@pytest.mark.parametrize("architecture", ["two_linear", "three_linear_square"])
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_backward_matches_finite_differences_and_complex_step(architecture, loss, activation):
    network, params, x, y = _setup(_architecture(architecture, activation), loss)
    grads = network.backward(params, x, y)
    assert list(grads) == list(network.param_shapes())
    assert_grads_close(grads, numerical_gradient(network, params, x, y), rtol=1e-6, atol=1e-9)
    # ReLU is not analytic at 0, but the engine branches on the real part and sample_batch keeps
    # every ReLU input at least 1e-3 from 0, so a 1e-20 imaginary step never meets the kink and
    # ReLU is linear (hence analytic) on each side: complex step is exact here too, no skip needed.
    assert_grads_close(grads, complex_step_gradient(network, params, x, y), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_df_is_the_derivative_wrt_the_pre_activation(name):
    fn = ACTIVATIONS[name]
    z = np.array([-3.0, -1.2, -0.4, 0.3, 0.9, 2.5])
    slope = fn.f(z + 1j * COMPLEX_STEP).imag / COMPLEX_STEP
    np.testing.assert_allclose(fn.df(z), slope, rtol=1e-12, atol=1e-15)
    assert fn.name == name


def test_activations_and_losses_are_stable_for_extreme_inputs():
    z = np.array([-1000.0, 1000.0])
    # Underflow to 0 is the right answer in the tails; overflow or NaN would be a bug.
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        np.testing.assert_allclose(ACTIVATIONS["sigmoid"].f(z), [0.0, 1.0])
        np.testing.assert_allclose(ACTIVATIONS["softplus"].f(z), [0.0, 1000.0])
        out = np.array([[1000.0, 0.0], [0.0, -1000.0]])
        labels = np.array([1, 0])
        assert Loss("softmax_cross_entropy").forward(out, labels) == pytest.approx(500.0)
        grad = Loss("softmax_cross_entropy").backward(out, labels)
        np.testing.assert_allclose(grad, [[0.5, -0.5], [0.0, 0.0]], atol=1e-12)


def test_loss_values_follow_the_contract():
    out = np.array([[1.0, 2.0], [0.0, -1.0]])
    target = np.array([[0.0, 2.0], [1.0, 1.0]])
    assert Loss("mse").forward(out, target) == pytest.approx((1 + 0 + 1 + 4) / 4)
    np.testing.assert_allclose(Loss("mse").backward(out, target), 2 * (out - target) / 4)
    labels = np.array([1, 0])
    log_probs = out - np.log(np.exp(out).sum(axis=1, keepdims=True))
    expected = -(log_probs[0, 1] + log_probs[1, 0]) / 2
    assert Loss("softmax_cross_entropy").forward(out, labels) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("inputs", "layers", "loss", "message"),
    [
        (3, [{"linear": 2}, {"activation": "swish"}], "mse", "unknown activation 'swish'"),
        (3, [{"linear": 2}], "hinge", "unknown loss 'hinge'"),
        (3, [{"linear": 0}], "mse", "linear size must be a positive integer"),
        (3, [{"linear": -2}], "mse", "linear size must be a positive integer"),
        (3, [{"linear": 2.0}], "mse", "linear size must be a positive integer"),
        (3, [{"linear": True}], "mse", "linear size must be a positive integer"),
        (0, [{"linear": 2}], "mse", "inputs must be a positive integer"),
        ("3", [{"linear": 2}], "mse", "inputs must be a positive integer"),
        (3, [{"conv": 2}], "mse", "unknown layer kind 'conv'"),
        (3, [{"linear": 2, "activation": "tanh"}], "mse", "layer 1 must be a single"),
        (3, [{"activation": "tanh"}], "mse", "at least one linear layer"),
        (3, [], "mse", "at least one linear layer"),
        (3, [{"linear": 1}], "softmax_cross_entropy", "at least 2 outputs"),
        (3, [{"linear": 2}, {"activation": ["tanh"]}], "mse", "unknown activation"),
    ],
)
def test_from_spec_rejects_bad_specs_with_a_plain_message(inputs, layers, loss, message):
    with pytest.raises(ValueError, match=message):
        Network.from_spec(inputs, layers, loss)


def test_from_spec_builds_numbered_layers_and_param_shapes():
    network = Network.from_spec(
        3, [{"linear": 4}, {"activation": "tanh"}, {"linear": 4}, {"linear": 2}], "mse"
    )
    assert network.layers == (
        Linear(1, 3, 4),
        Activation(ACTIVATIONS["tanh"]),
        Linear(2, 4, 4),
        Linear(3, 4, 2),
    )
    assert network.outputs == 2
    shapes = network.param_shapes()
    assert list(shapes) == ["W1", "b1", "W2", "b2", "W3", "b3"]
    assert shapes == {"W1": (3, 4), "b1": (4,), "W2": (4, 4), "b2": (4,), "W3": (4, 2), "b3": (2,)}
    params = init_params(network, np.random.default_rng(1))
    assert {key: value.shape for key, value in params.items()} == shapes
    assert all(np.all(np.abs(params[f"b{k}"]) >= 0.05) for k in (1, 2, 3))


def test_from_spec_accepts_numpy_integer_sizes():
    network = Network.from_spec(np.int64(2), [{"linear": np.int64(3)}], "mse")
    assert network.param_shapes() == {"W1": (2, 3), "b1": (3,)}
    assert type(network.inputs) is int and type(network.outputs) is int


def test_tape_holds_each_layers_input_then_the_output():
    layers = [{"linear": 4}, {"activation": "sigmoid"}, {"linear": 2}]
    network, params, x, y = _setup(layers, "mse")
    loss, tape = network.forward(params, x, y)
    assert len(tape) == len(network.layers) + 1
    z1 = x @ params["W1"] + params["b1"]
    h1 = 1 / (1 + np.exp(-z1))
    out = h1 @ params["W2"] + params["b2"]
    for recorded, expected in zip(tape, [x, z1, h1, out]):
        np.testing.assert_allclose(recorded, expected)
    assert isinstance(loss, float)
    assert loss == pytest.approx(np.mean((out - y) ** 2))
    assert network.loss_value(params, x, y) == loss


def test_sample_batch_gives_targets_of_the_right_kind():
    rng = np.random.default_rng(2)
    regression = Network.from_spec(2, [{"linear": 3}], "mse")
    x, y = sample_batch(regression, 6, rng, init_params(regression, rng))
    assert x.shape == (6, 2) and y.shape == (6, 3) and y.dtype == np.float64
    classifier = Network.from_spec(2, [{"linear": 3}], "softmax_cross_entropy")
    x, labels = sample_batch(classifier, 50, rng, init_params(classifier, rng))
    assert x.shape == (50, 2) and labels.shape == (50,)
    assert np.issubdtype(labels.dtype, np.integer)
    assert set(labels.tolist()) == {0, 1, 2}


def test_sample_batch_keeps_relu_pre_activations_away_from_zero():
    network = Network.from_spec(2, [{"linear": 1}, {"activation": "relu"}, {"linear": 2}], "mse")
    rng = np.random.default_rng(3)
    # Scale W1 and b1 down so that most naive draws land within the margin of the kink.
    params = init_params(network, rng)
    params["W1"] = np.full((2, 1), 1e-3)
    params["b1"] = np.array([1e-4])
    naive = np.random.default_rng(4).normal(size=(40, 2)) @ params["W1"] + params["b1"]
    assert np.any(np.abs(naive) < RELU_MARGIN)
    x, _ = sample_batch(network, 40, rng, params)
    z1 = x @ params["W1"] + params["b1"]
    assert np.all(np.abs(z1) >= RELU_MARGIN)


def test_sample_batch_exempts_units_already_clipped_by_an_earlier_relu():
    layers = [{"linear": 5}, {"activation": "relu"}, {"activation": "relu"}, {"linear": 2}]
    network, params, x, y = _setup(layers, "mse", batch=64)
    z1 = x @ params["W1"] + params["b1"]
    assert np.all(np.abs(z1) >= RELU_MARGIN)
    expected = numerical_gradient(network, params, x, y)
    assert_grads_close(network.backward(params, x, y), expected, rtol=1e-6, atol=1e-9)


def test_sample_batch_gives_up_when_the_parameters_pin_a_relu_input_at_zero():
    network = Network.from_spec(2, [{"linear": 1}, {"activation": "relu"}, {"linear": 1}], "mse")
    rng = np.random.default_rng(5)
    params = init_params(network, rng)
    params["W1"] = np.zeros((2, 1))
    params["b1"] = np.zeros(1)
    with pytest.raises(RuntimeError, match="away from 0"):
        sample_batch(network, 4, rng, params)


@pytest.mark.parametrize("loss", LOSSES)
def test_backward_and_helpers_do_not_mutate_their_inputs(loss):
    layers = [
        {"linear": 4},
        {"activation": "relu"},
        {"linear": 4},
        {"activation": "identity"},
        {"linear": 3},
    ]
    network, params, x, y = _setup(layers, loss)
    saved = ({key: value.copy() for key, value in params.items()}, x.copy(), y.copy())
    grads = network.backward(params, x, y)
    numerical_gradient(network, params, x, y)
    saved_grads = {key: value.copy() for key, value in grads.items()}
    gradient_step(params, grads, 0.1)
    for key in params:
        np.testing.assert_array_equal(params[key], saved[0][key])
        np.testing.assert_array_equal(grads[key], saved_grads[key])
    np.testing.assert_array_equal(x, saved[1])
    np.testing.assert_array_equal(y, saved[2])


def test_gradient_step_moves_against_the_gradient_and_lowers_the_loss():
    layers = [{"linear": 4}, {"activation": "tanh"}, {"linear": 2}]
    network, params, x, y = _setup(layers, "softmax_cross_entropy")
    grads = network.backward(params, x, y)
    stepped = gradient_step(params, grads, 0.01)
    assert stepped is not params
    for key in params:
        assert stepped[key] is not params[key]
        np.testing.assert_allclose(stepped[key], params[key] - 0.01 * grads[key])
    assert network.loss_value(stepped, x, y) < network.loss_value(params, x, y)
    with pytest.raises(ValueError, match="name different arrays"):
        gradient_step(params, {"W1": grads["W1"]}, 0.01)


def test_a_replaced_loss_flows_through_the_same_backward_loop():
    class DoubledLoss(Loss):
        def backward(self, out, y):
            return 2.0 * super().backward(out, y)

    layers = [{"linear": 4}, {"activation": "softplus"}, {"linear": 2}]
    network, params, x, y = _setup(layers, "mse")
    reference = network.backward(params, x, y)
    doubled = dataclasses.replace(network, loss=DoubledLoss("mse")).backward(params, x, y)
    for key in reference:
        np.testing.assert_allclose(doubled[key], 2.0 * reference[key])


def test_a_replaced_activation_derivative_flows_through_the_same_backward_loop():
    sigmoid = ACTIVATIONS["sigmoid"]
    forgetful = ActivationFn("sigmoid", sigmoid.f, np.ones_like)
    network, params, x, y = _setup([{"linear": 4}, {"activation": "sigmoid"}, {"linear": 2}], "mse")
    first, _, last = network.layers
    mistaken = dataclasses.replace(network, layers=(first, Activation(forgetful), last))
    _, tape = network.forward(params, x, y)
    delta2 = Loss("mse").backward(tape[-1], y)
    grads = mistaken.backward(params, x, y)
    np.testing.assert_allclose(grads["W1"], x.T @ (delta2 @ params["W2"].T))
    np.testing.assert_allclose(grads["W2"], network.backward(params, x, y)["W2"])


def test_cached_input_is_the_seam_for_a_wrong_cache():
    class PreActivationCache(Network):
        def cached_input(self, tape, position):
            if isinstance(self.layers[position], Linear) and position >= 2:
                return tape[position - 1]
            return tape[position]

    layers = [{"linear": 4}, {"activation": "tanh"}, {"linear": 2}]
    network, params, x, y = _setup(layers, "mse")
    mistaken = PreActivationCache.from_spec(INPUTS, layers, "mse")
    _, tape = network.forward(params, x, y)
    delta2 = Loss("mse").backward(tape[-1], y)
    grads = mistaken.backward(params, x, y)
    np.testing.assert_allclose(grads["W2"], tape[1].T @ delta2)
    np.testing.assert_allclose(grads["b2"], network.backward(params, x, y)["b2"])


def test_explain_walks_the_layers_from_the_loss_down():
    mse = Network.from_spec(3, [{"linear": 4}, {"activation": "sigmoid"}, {"linear": 2}], "mse")
    lines = explain(mse)
    assert all(isinstance(line, str) for line in lines)
    assert "dL/dout = 2 (out - y) / N   (mse, mean over all N elements)" in lines
    assert "dL/dW2 = h1^T @ delta2" in lines
    assert "delta1 = dL/dz1 = (delta2 @ W2^T) * sigmoid'(z1), sigmoid'(z) = s(z)(1 - s(z))" in lines
    assert "dL/db1 = sum over the batch of delta1" in lines
    assert lines.index("dL/dW2 = h1^T @ delta2") < lines.index("dL/dW1 = x^T @ delta1")

    stacked = Network.from_spec(
        2,
        [{"linear": 3}, {"activation": "tanh"}, {"activation": "relu"}, {"linear": 3}],
        "softmax_cross_entropy",
    )
    text = "\n".join(explain(stacked))
    assert "softmax(out) - onehot(y)" in text
    assert "(delta2 @ W2^T) * relu'(h1) * tanh'(z1)" in text
    assert "dL/dW2 = h1_2^T @ delta2" in text
    for key in stacked.param_shapes():
        assert f"dL/d{key} = " in text


def _activations(max_size: int) -> st.SearchStrategy[list[dict[str, int | str]]]:
    names = st.lists(st.sampled_from(sorted(ACTIVATIONS)), max_size=max_size)
    return names.map(lambda run: [{"activation": name} for name in run])


@st.composite
def small_networks(draw):
    """Depth 1..3 linear layers of width 1..5, each followed by up to two activations."""
    loss = draw(st.sampled_from(LOSSES))
    layers = draw(_activations(max_size=1))
    depth = draw(st.integers(1, 3))
    for k in range(depth):
        smallest = 2 if k == depth - 1 and loss == "softmax_cross_entropy" else 1
        layers.append({"linear": draw(st.integers(smallest, 5))})
        layers.extend(draw(_activations(max_size=2)))
    inputs, batch = draw(st.integers(1, 5)), draw(st.integers(1, 4))
    return inputs, layers, loss, batch, draw(st.integers(0, 2**32 - 1))


@settings(max_examples=40, deadline=None)
@given(small_networks())
def test_backward_matches_numerical_gradient_on_random_architectures(case):
    inputs, layers, loss, batch, seed = case
    network, params, x, y = _setup(layers, loss, inputs=inputs, batch=batch, seed=seed)
    expected = numerical_gradient(network, params, x, y)
    assert_grads_close(network.backward(params, x, y), expected, rtol=1e-6, atol=1e-9)
