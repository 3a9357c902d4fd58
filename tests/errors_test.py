"""Every bad input gets one JaxMoEInputError naming the field, the value and what is allowed."""

import jax.numpy as jnp
import numpy as np
import pytest

import jaxmoe
from jaxmoe import DenseToSparseMoE, HierarchicalMoE, JaxMoEInputError, SoftmaxMoE


@pytest.mark.parametrize(
    "build, field",
    [
        (lambda: SoftmaxMoE("sigmoid", k=0, d=1), "k=0"),
        (lambda: SoftmaxMoE("sigmoid", k=2, d=0), "d=0"),
        (lambda: SoftmaxMoE("sigmoid", k=2.5, d=1), "k=2.5"),
        (lambda: SoftmaxMoE("softplus", k=2, d=1), "expert='softplus'"),
        (lambda: DenseToSparseMoE("sigmoid", k=2, d=1, router="cubic"), "router='cubic'"),
        (lambda: HierarchicalMoE("sigmoid", k1=0, k2=2, d=1), "k1=0"),
        (lambda: jaxmoe.ffn(0), "width=0"),
        (lambda: jaxmoe.get_activation("swish"), "activation='swish'"),
        (lambda: jaxmoe.ParameterBox(tau=(0.0, 1.0)), "box.tau"),
        (lambda: jaxmoe.ParameterBox(gate=-1.0), "box.gate"),
        (lambda: jaxmoe.get_input_law("cauchy"), "inputs='cauchy'"),
        (lambda: jaxmoe.get_input_law("uniform", low=1.0, high=-1.0), "inputs="),
    ],
)
def test_bad_construction(build, field):
    with pytest.raises(JaxMoEInputError) as info:
        build()
    assert str(info.value).startswith(field)
    assert "must" in str(info.value)


def test_a_long_value_keeps_its_head_and_its_tail():
    path = "/a/very/long/folder/" + "x" * 100 + "/b-linear"
    message = str(JaxMoEInputError("out", path, "holds a sweep of another config"))
    assert message.startswith("out='/a/very/long/folder/") and message.endswith("/b-linear': holds a sweep of another config")
    assert "..." in message and len(message.split(":")[0]) == len("out=") + 80
    assert str(JaxMoEInputError("k", 0, "must be >= 1")) == "k=0: must be >= 1"


def test_wrong_shapes():
    model = SoftmaxMoE("sigmoid", k=2, d=2)
    p = model.zeros()
    with pytest.raises(JaxMoEInputError, match=r"x.shape=\(3, 5\): must be \(d, n\) = \(2, n\)"):
        model(p, jnp.zeros((3, 5)))
    with pytest.raises(JaxMoEInputError, match=r"x.shape=\(5,\)"):
        model(p, jnp.zeros(5))
    with pytest.raises(JaxMoEInputError, match=r"params.beta1.shape=\(3, 2\): must be \(2, 2\)"):
        model(p._replace(beta1=jnp.zeros((3, 2))), jnp.zeros((2, 5)))
    with pytest.raises(JaxMoEInputError, match=r"params.eta=\['a'\]: must be a dict with keys \['a', 'b'\]"):
        model(p._replace(eta={"a": jnp.zeros((2, 2))}), jnp.zeros((2, 5)))
    with pytest.raises(JaxMoEInputError, match="must be a jaxmoe.SoftmaxParams"):
        model(tuple(p), jnp.zeros((2, 5)))


def _softmax_truth(**over):
    fields = dict(beta0=[0.0, 0.0], beta1=[[4.0], [0.0]], eta={"a": [[3.0], [-2.5]], "b": [-1.0, -0.5]})
    fields.update(over)
    return fields


@pytest.mark.parametrize(
    "over, match",
    [
        (dict(eta={"a": [[3.0], [3.0]], "b": [-1.0, -1.0]}), "A.2"),
        (dict(beta0=[0.0, 1.0]), "A.3"),
        (dict(beta1=[[4.0], [1.0]]), "A.3"),
        (dict(beta1=[[0.0], [0.0]]), "A.4"),
        (dict(beta1=[[40.0], [0.0]]), r"truth.beta1=\[\[40.0\], \[0.0\]\]: must lie in the parameter box"),
        (dict(beta0=[np.nan, 0.0]), "must be finite"),
    ],
)
def test_bad_truth(over, match):
    model = SoftmaxMoE("sigmoid", k=2, d=1)
    with pytest.raises(JaxMoEInputError, match=match):
        jaxmoe.Setting("t", model, model.make_params(**_softmax_truth(**over)))


def test_bad_truth_temperature_and_hierarchy():
    dts = DenseToSparseMoE("sigmoid", k=2, d=1)
    p = dts.make_params(**_softmax_truth(), tau=-1.0)
    with pytest.raises(JaxMoEInputError, match=r"truth.tau=-1.0: must be > 0"):
        dts.check_truth(p)
    p = dts.make_params(**_softmax_truth(), tau=50.0)
    with pytest.raises(JaxMoEInputError, match="parameter box"):
        dts.check_truth(p)
    setting = jaxmoe.get_preset("hierarchical-ridge")
    bad = setting.truth._replace(beta0=setting.truth.beta0.copy())
    bad.beta0[1, 1] = 0.5
    with pytest.raises(JaxMoEInputError, match=r"truth.beta1\[1\]\[-1\], truth.beta0\[1\]\[-1\].*A.3"):
        setting.model.check_truth(bad)


def test_bad_setting_fields():
    s = jaxmoe.get_preset("softmax-ridge")
    with pytest.raises(JaxMoEInputError, match="sigma=-0.1"):
        s.replace(sigma=-0.1)
    with pytest.raises(JaxMoEInputError, match=r"k_fit=1: must be >= k\* = 2"):
        s.replace(k_fit=1)
    with pytest.raises(JaxMoEInputError, match=r"k=1: must be >= k\* = 2"):
        s.fitted_model(1)
    with pytest.raises(JaxMoEInputError, match="n=0"):
        jaxmoe.sample_data(jnp.zeros(2, jnp.uint32), s.model, s.truth_params(), 0, 0.1)
    with pytest.raises(JaxMoEInputError, match="sigma=nan"):
        jaxmoe.sample_data(jnp.zeros(2, jnp.uint32), s.model, s.truth_params(), 10, float("nan"))
    with pytest.raises(JaxMoEInputError, match="fields="):
        s.model.make_params(beta0=[0.0, 0.0])
