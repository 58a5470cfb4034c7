#!/usr/bin/python3
"""Make the example ONNX models of mlfleet from fitted scikit-learn estimators.

Run with Debian's python3 (packages python3-sklearn python3-onnx python3-numpy):

    cd examples/testdata && /usr/bin/python3 make_models.py

No converter library is used: every graph is built by hand with onnx.helper
from the fitted estimator's parameters, the way a converter would. For each
model NAME the script writes

    NAME.onnx           the model
    NAME.inputs.json    {"inputs": [{"name", "dtype", "shape", "data"}]}
    NAME.expected.json  {"outputs": [{"name", "dtype", "shape", "data"}]}
                        computed by scikit-learn (or numpy for the pure
                        column operations sklearn has no estimator for),
                        never by an ONNX runtime
    NAME.sample.json    (tabular models) a few input rows keyed by feature name

Float data are JSON numbers; NaN and infinities are written as the strings
"NaN", "Inf" and "-Inf". Tensor data are flat and row-major. A ZipMap output
has dtype "seq_map_int64_float" (or "seq_map_string_float") and data a list
of objects, one per row, keyed by class label.

Everything is seeded, so running the script again gives the same files.
"""

import json
import math
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_iris, make_classification, make_regression
from sklearn.ensemble import GradientBoostingRegressor, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import (Binarizer, LabelEncoder, Normalizer,
                                   OneHotEncoder, StandardScaler)
from sklearn.svm import SVC, SVR
from sklearn.tree import DecisionTreeClassifier

OUT = os.path.dirname(os.path.abspath(__file__))
ML = "ai.onnx.ml"
CORE_OPSET = 15
ML_OPSET = 3
PRODUCER = "mlfleet make_models.py"

IRIS_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
SENSOR_FEATURES = ["temperature", "vibration", "pressure", "current", "humidity", "rpm"]
RUL_FEATURES = ["cycles", "temperature", "vibration", "pressure", "oil_quality"]


# ---------------------------------------------------------------- writing


def jnum(v):
    """A float as JSON: finite numbers as numbers, the rest as strings."""
    v = float(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Inf" if v > 0 else "-Inf"
    return v


def tensor_json(name, arr):
    arr = np.asarray(arr)
    if arr.dtype == np.float32:
        dtype, data = "float32", [jnum(v) for v in arr.ravel()]
    elif arr.dtype == np.float64:
        dtype, data = "float64", [jnum(v) for v in arr.ravel()]
    elif arr.dtype == np.int64:
        dtype, data = "int64", [int(v) for v in arr.ravel()]
    elif arr.dtype.kind in "OUS":
        dtype, data = "string", [str(v) for v in arr.ravel()]
    else:
        raise ValueError("unsupported dtype %s for %s" % (arr.dtype, name))
    return {"name": name, "dtype": dtype, "shape": list(arr.shape), "data": data}


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=False, allow_nan=False)
        f.write("\n")


def save(name, graph, inputs, outputs, sample=None, ml_opset=ML_OPSET, doc=""):
    """Check and write NAME.onnx and its JSON companions.

    inputs, outputs: lists of (name, array) in graph order; a ZipMap output
    is given as (name, (dtype, list_of_dicts)).
    """
    model = helper.make_model(
        graph,
        producer_name=PRODUCER,
        producer_version="1",
        opset_imports=[helper.make_opsetid("", CORE_OPSET), helper.make_opsetid(ML, ml_opset)],
    )
    model.ir_version = 8
    model.doc_string = doc
    onnx.checker.check_model(model)
    with open(os.path.join(OUT, name + ".onnx"), "wb") as f:
        f.write(model.SerializeToString())
    write_json(os.path.join(OUT, name + ".inputs.json"),
               {"inputs": [tensor_json(n, a) for n, a in inputs]})
    outs = []
    for n, a in outputs:
        if isinstance(a, tuple):
            dtype, rows = a
            outs.append({"name": n, "dtype": dtype, "shape": [len(rows)],
                         "data": [{str(k): jnum(v) for k, v in r.items()} for r in rows]})
        else:
            outs.append(tensor_json(n, a))
    write_json(os.path.join(OUT, name + ".expected.json"), {"outputs": outs})
    if sample is not None:
        write_json(os.path.join(OUT, name + ".sample.json"), sample)
    print("wrote", name)


def sample_rows(features, X, n=3):
    return [{f: jnum(np.float32(v)) for f, v in zip(features, row)} for row in X[:n]]


def vinfo(name, elem, shape):
    return helper.make_tensor_value_info(name, elem, shape)


def seq_map_type(key_elem):
    """The type seq(map(key, float)) of a ZipMap output."""
    t = onnx.TypeProto()
    m = t.sequence_type.elem_type.map_type
    m.key_type = key_elem
    m.value_type.tensor_type.elem_type = TensorProto.FLOAT
    return t


def f32(a):
    return np.asarray(a, dtype=np.float32)


def floats(a):
    return [float(v) for v in f32(a).ravel()]


def init(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def confident_rows(proba, n, margin=1e-3):
    """Indices of the first n rows whose top two probabilities differ by more than margin."""
    s = np.sort(proba, axis=1)
    ok = np.where(s[:, -1] - s[:, -2] > margin)[0]
    return ok[:n]


# ---------------------------------------------------------------- data


def iris():
    d = load_iris()
    X = d.data.astype(np.float32).astype(np.float64)
    return train_test_split(X, d.target.astype(np.int64), test_size=0.3, random_state=0, stratify=d.target)


def sensors():
    X, y = make_classification(n_samples=800, n_features=6, n_informative=4, n_redundant=1,
                               weights=[0.85], flip_y=0.02, class_sep=1.2, random_state=7)
    # Bring the columns to plausible physical ranges.
    loc = np.array([65.0, 2.0, 101.3, 12.0, 40.0, 1500.0])
    scale = np.array([8.0, 0.6, 1.5, 2.5, 10.0, 120.0])
    X = (X * scale + loc).astype(np.float32).astype(np.float64)
    return train_test_split(X, y.astype(np.int64), test_size=0.25, random_state=0)


def rul():
    rng = np.random.RandomState(11)
    n = 600
    cycles = rng.uniform(0, 300, n)
    temp = rng.normal(70, 6, n) + cycles * 0.03
    vib = rng.gamma(2.0, 0.5, n) + cycles * 0.004
    pres = rng.normal(101, 2, n)
    oil = np.clip(rng.normal(0.9, 0.05, n) - cycles * 0.001, 0, 1)
    y = 320 - cycles - 3.0 * np.maximum(temp - 75, 0) - 12 * vib + 40 * (oil - 0.7) + rng.normal(0, 5, n)
    y = np.maximum(y, 0)
    X = np.column_stack([cycles, temp, vib, pres, oil]).astype(np.float32).astype(np.float64)
    return train_test_split(X, y, test_size=0.2, random_state=0)


# ---------------------------------------------------------------- linear models


def linear_classifier_models():
    Xtr, Xte, ytr, _ = iris()
    lr = LogisticRegression(multi_class="multinomial", max_iter=1000, random_state=0).fit(Xtr, ytr)
    rows = confident_rows(lr.predict_proba(Xte), 20)
    X = f32(Xte[rows])
    label = lr.predict(X).astype(np.int64)
    proba = lr.predict_proba(X)
    labels = [int(c) for c in lr.classes_]

    def linear_node(post):
        return helper.make_node(
            "LinearClassifier", ["X"], ["label", "probabilities"], domain=ML,
            coefficients=floats(lr.coef_), intercepts=floats(lr.intercept_),
            classlabels_ints=labels, multi_class=0, post_transform=post)

    g = helper.make_graph(
        [linear_node("SOFTMAX")], "iris_logreg",
        [vinfo("X", TensorProto.FLOAT, ["N", 4])],
        [vinfo("label", TensorProto.INT64, ["N"]), vinfo("probabilities", TensorProto.FLOAT, ["N", 3])])
    save("iris_logreg", g, [("X", X)], [("label", label), ("probabilities", proba)],
         sample_rows(IRIS_FEATURES, X),
         doc="LogisticRegression(multinomial) on iris as LinearClassifier with SOFTMAX")

    # The same model with the probabilities as a sequence of maps (ZipMap).
    zm = helper.make_node("ZipMap", ["probabilities"], ["output_probability"], domain=ML,
                          classlabels_int64s=labels)
    g = helper.make_graph(
        [linear_node("SOFTMAX"), zm], "iris_logreg_zipmap",
        [vinfo("X", TensorProto.FLOAT, ["N", 4])],
        [vinfo("label", TensorProto.INT64, ["N"]),
         helper.make_value_info("output_probability", seq_map_type(TensorProto.INT64))])
    maps = [{labels[k]: float(p[k]) for k in range(len(labels))} for p in proba]
    save("iris_logreg_zipmap", g, [("X", X)],
         [("label", label), ("output_probability", ("seq_map_int64_float", maps))],
         sample_rows(IRIS_FEATURES, X),
         doc="iris_logreg with a ZipMap output")

    # One-vs-rest: LOGISTIC per class, then L1 normalisation, as sklearn does.
    ovr = LogisticRegression(multi_class="ovr", max_iter=1000, random_state=0).fit(Xtr, ytr)
    rows = confident_rows(ovr.predict_proba(Xte), 20)
    X = f32(Xte[rows])
    lin = helper.make_node(
        "LinearClassifier", ["X"], ["label", "raw_probabilities"], domain=ML,
        coefficients=floats(ovr.coef_), intercepts=floats(ovr.intercept_),
        classlabels_ints=labels, post_transform="LOGISTIC")
    norm = helper.make_node("Normalizer", ["raw_probabilities"], ["probabilities"], domain=ML, norm="L1")
    g = helper.make_graph(
        [lin, norm], "iris_logreg_ovr",
        [vinfo("X", TensorProto.FLOAT, ["N", 4])],
        [vinfo("label", TensorProto.INT64, ["N"]), vinfo("probabilities", TensorProto.FLOAT, ["N", 3])])
    save("iris_logreg_ovr", g, [("X", X)],
         [("label", ovr.predict(X).astype(np.int64)), ("probabilities", ovr.predict_proba(X))],
         sample_rows(IRIS_FEATURES, X),
         doc="LogisticRegression(ovr) on iris as LinearClassifier(LOGISTIC) + Normalizer(L1)")


def binary_linear_model():
    """Binary LogisticRegression: one coefficient row, LOGISTIC gives [1-p, p]."""
    Xtr, Xte, ytr, _ = sensors()
    lr = LogisticRegression(C=10.0, max_iter=20000, random_state=0).fit(Xtr, ytr)
    rows = confident_rows(lr.predict_proba(Xte), 30)
    X = f32(Xte[rows])
    node = helper.make_node(
        "LinearClassifier", ["X"], ["label", "probabilities"], domain=ML,
        coefficients=floats(lr.coef_), intercepts=floats(lr.intercept_),
        classlabels_ints=[int(c) for c in lr.classes_], post_transform="LOGISTIC")
    g = helper.make_graph(
        [node], "sensor_logreg", [vinfo("X", TensorProto.FLOAT, ["N", 6])],
        [vinfo("label", TensorProto.INT64, ["N"]), vinfo("probabilities", TensorProto.FLOAT, ["N", 2])])
    save("sensor_logreg", g, [("X", X)],
         [("label", lr.predict(X).astype(np.int64)), ("probabilities", lr.predict_proba(X))],
         sample_rows(SENSOR_FEATURES, X),
         doc="binary LogisticRegression, sensor anomaly: LinearClassifier with one score row")


def linear_regressor_model():
    Xtr, Xte, ytr, _ = rul()
    m = LinearRegression().fit(Xtr, ytr)
    X = f32(Xte[:20])
    node = helper.make_node("LinearRegressor", ["X"], ["variable"], domain=ML,
                            coefficients=floats(m.coef_), intercepts=[float(m.intercept_)], targets=1)
    g = helper.make_graph([node], "rul_linreg", [vinfo("X", TensorProto.FLOAT, ["N", 5])],
                          [vinfo("variable", TensorProto.FLOAT, ["N", 1])])
    save("rul_linreg", g, [("X", X)], [("variable", m.predict(X).reshape(-1, 1))],
         sample_rows(RUL_FEATURES, X), doc="LinearRegression of remaining useful life")


# ---------------------------------------------------------------- trees


def leq_threshold(t):
    """The largest float32 <= t: for float32 x, x <= t exactly when x <= this."""
    t32 = np.float32(t)
    if float(t32) > t:
        t32 = np.nextafter(t32, np.float32(-np.inf))
    return float(t32)


def tree_nodes(tree, tree_id, attrs):
    t = tree.tree_
    for i in range(t.node_count):
        attrs["nodes_treeids"].append(tree_id)
        attrs["nodes_nodeids"].append(i)
        attrs["nodes_hitrates"].append(1.0)
        attrs["nodes_missing_value_tracks_true"].append(0)
        if t.children_left[i] == -1:
            attrs["nodes_modes"].append("LEAF")
            attrs["nodes_featureids"].append(0)
            attrs["nodes_values"].append(0.0)
            attrs["nodes_truenodeids"].append(0)
            attrs["nodes_falsenodeids"].append(0)
        else:
            attrs["nodes_modes"].append("BRANCH_LEQ")
            attrs["nodes_featureids"].append(int(t.feature[i]))
            attrs["nodes_values"].append(leq_threshold(t.threshold[i]))
            attrs["nodes_truenodeids"].append(int(t.children_left[i]))
            attrs["nodes_falsenodeids"].append(int(t.children_right[i]))


def empty_node_attrs():
    keys = ["nodes_treeids", "nodes_nodeids", "nodes_hitrates", "nodes_missing_value_tracks_true",
            "nodes_modes", "nodes_featureids", "nodes_values", "nodes_truenodeids", "nodes_falsenodeids"]
    return {k: [] for k in keys}


def forest_classifier_attrs(trees, n_classes, binary):
    """TreeEnsembleClassifier attributes averaging class fractions over trees."""
    attrs = empty_node_attrs()
    attrs.update(class_treeids=[], class_nodeids=[], class_ids=[], class_weights=[])
    n = len(trees)
    for tid, est in enumerate(trees):
        tree_nodes(est, tid, attrs)
        t = est.tree_
        for i in range(t.node_count):
            if t.children_left[i] != -1:
                continue
            v = t.value[i][0]
            frac = v / v.sum()
            # Binary: one score column, the positive class's probability (class id 0 is the
            # only id used, so the runtime outputs [1-p, p]).
            pairs = [(0, frac[1])] if binary else [(k, frac[k]) for k in range(n_classes)]
            for k, w in pairs:
                if w == 0:
                    continue
                attrs["class_treeids"].append(tid)
                attrs["class_nodeids"].append(i)
                attrs["class_ids"].append(k)
                attrs["class_weights"].append(float(w / n))
    return attrs


def forest_model():
    Xtr, Xte, ytr, _ = sensors()
    rf = RandomForestClassifier(n_estimators=10, max_depth=6, random_state=0).fit(Xtr, ytr)
    rows = confident_rows(rf.predict_proba(Xte), 40)
    X = f32(Xte[rows])
    attrs = forest_classifier_attrs(rf.estimators_, 2, binary=True)
    node = helper.make_node("TreeEnsembleClassifier", ["X"], ["label", "probabilities"], domain=ML,
                            classlabels_int64s=[int(c) for c in rf.classes_], post_transform="NONE",
                            **attrs)
    g = helper.make_graph([node], "sensor_rf", [vinfo("X", TensorProto.FLOAT, ["N", 6])],
                          [vinfo("label", TensorProto.INT64, ["N"]),
                           vinfo("probabilities", TensorProto.FLOAT, ["N", 2])])
    save("sensor_rf", g, [("X", X)],
         [("label", rf.predict(X).astype(np.int64)), ("probabilities", rf.predict_proba(X))],
         sample_rows(SENSOR_FEATURES, X),
         doc="RandomForestClassifier(10 trees, depth<=6), sensor anomaly (1 = anomaly)")


def tree_strings_model():
    Xtr, Xte, ytr, _ = iris()
    names = np.array(["setosa", "versicolor", "virginica"], dtype=object)
    dt = DecisionTreeClassifier(max_depth=4, random_state=0).fit(Xtr, names[ytr])
    rows = confident_rows(dt.predict_proba(Xte), 20)
    X = f32(Xte[rows])
    attrs = forest_classifier_attrs([dt], 3, binary=False)
    node = helper.make_node("TreeEnsembleClassifier", ["X"], ["label", "probabilities"], domain=ML,
                            classlabels_strings=[str(c) for c in dt.classes_], post_transform="NONE",
                            **attrs)
    g = helper.make_graph([node], "iris_tree_strings", [vinfo("X", TensorProto.FLOAT, ["N", 4])],
                          [vinfo("label", TensorProto.STRING, ["N"]),
                           vinfo("probabilities", TensorProto.FLOAT, ["N", 3])])
    save("iris_tree_strings", g, [("X", X)],
         [("label", dt.predict(X).astype(object)), ("probabilities", dt.predict_proba(X))],
         sample_rows(IRIS_FEATURES, X),
         doc="DecisionTreeClassifier on iris with string class labels")


def gbr_model():
    Xtr, Xte, ytr, _ = rul()
    lr = 0.1
    gb = GradientBoostingRegressor(n_estimators=60, max_depth=3, learning_rate=lr, random_state=0).fit(Xtr, ytr)
    attrs = empty_node_attrs()
    attrs.update(target_treeids=[], target_nodeids=[], target_ids=[], target_weights=[])
    for tid, est in enumerate(gb.estimators_[:, 0]):
        tree_nodes(est, tid, attrs)
        t = est.tree_
        for i in range(t.node_count):
            if t.children_left[i] == -1:
                attrs["target_treeids"].append(tid)
                attrs["target_nodeids"].append(i)
                attrs["target_ids"].append(0)
                attrs["target_weights"].append(float(t.value[i][0][0] * lr))
    base = float(np.asarray(gb.init_.constant_).ravel()[0])
    X = f32(Xte[:30])
    node = helper.make_node("TreeEnsembleRegressor", ["X"], ["variable"], domain=ML, n_targets=1,
                            aggregate_function="SUM", base_values=[base], post_transform="NONE", **attrs)
    g = helper.make_graph([node], "rul_gbr", [vinfo("X", TensorProto.FLOAT, ["N", 5])],
                          [vinfo("variable", TensorProto.FLOAT, ["N", 1])])
    save("rul_gbr", g, [("X", X)], [("variable", gb.predict(X).reshape(-1, 1))],
         sample_rows(RUL_FEATURES, X),
         doc="GradientBoostingRegressor(60 trees, depth 3) of remaining useful life")


# ---------------------------------------------------------------- MLP


def mlp_model():
    Xtr, Xte, ytr, _ = iris()
    mlp = MLPClassifier(hidden_layer_sizes=(16, 8), activation="relu", max_iter=3000, random_state=0).fit(Xtr, ytr)
    rows = confident_rows(mlp.predict_proba(Xte), 20)
    X = f32(Xte[rows])
    nodes, inits = [], []
    cur = "X"
    n_layers = len(mlp.coefs_)
    for i, (W, b) in enumerate(zip(mlp.coefs_, mlp.intercepts_)):
        inits += [init("W%d" % i, f32(W)), init("B%d" % i, f32(b))]
        nodes.append(helper.make_node("MatMul", [cur, "W%d" % i], ["mm%d" % i]))
        nodes.append(helper.make_node("Add", ["mm%d" % i, "B%d" % i], ["z%d" % i]))
        if i < n_layers - 1:
            nodes.append(helper.make_node("Relu", ["z%d" % i], ["h%d" % i]))
            cur = "h%d" % i
        else:
            cur = "z%d" % i
    nodes.append(helper.make_node("Softmax", [cur], ["probabilities"], axis=1))
    nodes.append(helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0))
    g = helper.make_graph(nodes, "iris_mlp", [vinfo("X", TensorProto.FLOAT, ["N", 4])],
                          [vinfo("label", TensorProto.INT64, ["N"]),
                           vinfo("probabilities", TensorProto.FLOAT, ["N", 3])], initializer=inits)
    save("iris_mlp", g, [("X", X)],
         [("label", mlp.predict(X).astype(np.int64)), ("probabilities", mlp.predict_proba(X))],
         sample_rows(IRIS_FEATURES, X), doc="MLPClassifier(16, 8, relu) on iris with core ops")


# ---------------------------------------------------------------- SVM


def svm_models():
    Xtr, Xte, ytr, _ = iris()
    svc = SVC(kernel="rbf", C=1.0, gamma="scale", decision_function_shape="ovo").fit(Xtr, ytr)
    dec = svc.decision_function(Xte)
    rows = np.where(np.abs(dec).min(axis=1) > 1e-3)[0][:20]
    X = f32(Xte[rows])
    dec = svc.decision_function(X)
    # Check our reading of libsvm's layout against sklearn before writing it down.
    K = np.exp(-svc._gamma * ((X[:, None, :].astype(np.float64) - svc.support_vectors_[None]) ** 2).sum(-1))
    start = np.concatenate([[0], np.cumsum(svc.n_support_)])
    ref, c = [], svc.dual_coef_
    for i in range(3):
        for j in range(i + 1, 3):
            si, sj = slice(start[i], start[i + 1]), slice(start[j], start[j + 1])
            ref.append(K[:, si] @ c[j - 1, si] + K[:, sj] @ c[i, sj])
    ref = np.column_stack(ref) + svc.intercept_
    assert np.allclose(ref, dec, atol=1e-6), "SVC layout check failed"
    node = helper.make_node(
        "SVMClassifier", ["X"], ["label", "scores"], domain=ML,
        classlabels_ints=[int(v) for v in svc.classes_], coefficients=floats(svc.dual_coef_),
        kernel_type="RBF", kernel_params=[float(svc._gamma), float(svc.coef0), float(svc.degree)],
        rho=floats(svc.intercept_), support_vectors=floats(svc.support_vectors_),
        vectors_per_class=[int(v) for v in svc.n_support_], post_transform="NONE")
    g = helper.make_graph([node], "iris_svc", [vinfo("X", TensorProto.FLOAT, ["N", 4])],
                          [vinfo("label", TensorProto.INT64, ["N"]),
                           vinfo("scores", TensorProto.FLOAT, ["N", 3])])
    save("iris_svc", g, [("X", X)], [("label", svc.predict(X).astype(np.int64)), ("scores", dec)],
         sample_rows(IRIS_FEATURES, X),
         doc="SVC(rbf, probability=False) on iris; scores are the one-vs-one decision values")

    Xr, yr = make_regression(n_samples=200, n_features=3, noise=4.0, random_state=3)
    Xr = Xr.astype(np.float32).astype(np.float64)
    svr = SVR(kernel="rbf", C=50.0, gamma="scale", epsilon=0.5).fit(Xr[:160], yr[:160])
    X = f32(Xr[160:180])
    node = helper.make_node(
        "SVMRegressor", ["X"], ["variable"], domain=ML,
        coefficients=floats(svr.dual_coef_), kernel_type="RBF",
        kernel_params=[float(svr._gamma), float(svr.coef0), float(svr.degree)],
        rho=floats(svr.intercept_), support_vectors=floats(svr.support_vectors_),
        n_supports=int(svr.support_vectors_.shape[0]), post_transform="NONE")
    g = helper.make_graph([node], "svr", [vinfo("X", TensorProto.FLOAT, ["N", 3])],
                          [vinfo("variable", TensorProto.FLOAT, ["N", 1])])
    save("svr", g, [("X", X)], [("variable", svr.predict(X).reshape(-1, 1))],
         sample_rows(["x0", "x1", "x2"], X), doc="SVR(rbf) on a synthetic regression")


# ---------------------------------------------------------------- transformers


def transformer_models():
    Xtr, Xte, _, _ = rul()
    X = f32(Xte[:10])

    sc = StandardScaler().fit(Xtr)
    node = helper.make_node("Scaler", ["X"], ["variable"], domain=ML,
                            offset=floats(sc.mean_), scale=floats(1.0 / sc.scale_))
    g = helper.make_graph([node], "scaler", [vinfo("X", TensorProto.FLOAT, ["N", 5])],
                          [vinfo("variable", TensorProto.FLOAT, ["N", 5])])
    save("scaler", g, [("X", X)], [("variable", sc.transform(X))], sample_rows(RUL_FEATURES, X),
         doc="StandardScaler")

    nm = Normalizer(norm="l2").fit(Xtr)
    node = helper.make_node("Normalizer", ["X"], ["variable"], domain=ML, norm="L2")
    g = helper.make_graph([node], "normalizer", [vinfo("X", TensorProto.FLOAT, ["N", 5])],
                          [vinfo("variable", TensorProto.FLOAT, ["N", 5])])
    save("normalizer", g, [("X", X)], [("variable", nm.transform(X))], sample_rows(RUL_FEATURES, X),
         doc="Normalizer(l2)")

    bz = Binarizer(threshold=0.5)
    rng = np.random.RandomState(5)
    B = f32(rng.uniform(-1, 2, (8, 4)))
    B[0, 0] = 0.5  # exactly at the threshold: sklearn gives 0 (strictly greater)
    node = helper.make_node("Binarizer", ["X"], ["variable"], domain=ML, threshold=0.5)
    g = helper.make_graph([node], "binarizer", [vinfo("X", TensorProto.FLOAT, ["N", 4])],
                          [vinfo("variable", TensorProto.FLOAT, ["N", 4])])
    save("binarizer", g, [("X", B)], [("variable", f32(bz.fit_transform(B)))], doc="Binarizer(0.5)")

    # SimpleImputer(mean) on sensor data with holes.
    S = rng.normal(20, 5, (50, 3))
    S[rng.uniform(size=S.shape) < 0.15] = np.nan
    S = S.astype(np.float32).astype(np.float64)
    im = SimpleImputer(strategy="mean").fit(S[:40])
    X = f32(S[40:])
    X[0, :] = np.nan
    node = helper.make_node("Imputer", ["X"], ["variable"], domain=ML,
                            imputed_value_floats=floats(im.statistics_), replaced_value_float=float("nan"))
    g = helper.make_graph([node], "imputer", [vinfo("X", TensorProto.FLOAT, ["N", 3])],
                          [vinfo("variable", TensorProto.FLOAT, ["N", 3])])
    save("imputer", g, [("X", X)], [("variable", im.transform(X))], doc="SimpleImputer(mean)")

    # Column selection (numpy indexing; sklearn has no estimator of its own for it).
    X = f32(Xte[:10])
    idx = np.array([0, 2, 4], dtype=np.int64)
    node = helper.make_node("ArrayFeatureExtractor", ["X", "indices"], ["variable"], domain=ML)
    g = helper.make_graph([node], "array_feature_extractor", [vinfo("X", TensorProto.FLOAT, ["N", 5])],
                          [vinfo("variable", TensorProto.FLOAT, ["N", 3])], initializer=[init("indices", idx)])
    save("array_feature_extractor", g, [("X", X)], [("variable", X[:, idx])], sample_rows(RUL_FEATURES, X),
         doc="select columns 0, 2, 4")

    # FeatureVectorizer: concatenation of typed inputs (numpy hstack as the reference).
    a = f32(rng.normal(0, 1, (6, 2)))
    b = rng.randint(0, 5, (6, 1)).astype(np.int64)
    c = f32(rng.normal(0, 1, (6, 3)))
    node = helper.make_node("FeatureVectorizer", ["a", "b", "c"], ["variable"], domain=ML,
                            inputdimensions=[2, 1, 3])
    g = helper.make_graph([node], "feature_vectorizer",
                          [vinfo("a", TensorProto.FLOAT, ["N", 2]), vinfo("b", TensorProto.INT64, ["N", 1]),
                           vinfo("c", TensorProto.FLOAT, ["N", 3])],
                          [vinfo("variable", TensorProto.FLOAT, ["N", 6])])
    save("feature_vectorizer", g, [("a", a), ("b", b), ("c", c)],
         [("variable", f32(np.hstack([a, b.astype(np.float32), c])))], doc="concatenate 3 inputs")


def encoder_models():
    rng = np.random.RandomState(9)
    # OneHotEncoder over two int64 columns: per column ArrayFeatureExtractor -> OneHotEncoder,
    # joined with FeatureVectorizer; unknown categories give zeros, as handle_unknown="ignore".
    C = np.column_stack([rng.choice([1, 2, 5], 60), rng.choice([10, 20, 30, 40], 60)]).astype(np.int64)
    oh = OneHotEncoder(handle_unknown="ignore").fit(C[:50])
    X = C[50:].copy()
    X[0, 0] = 7  # unseen
    X[1, 1] = 99  # unseen
    nodes, inits, dims = [], [], []
    for j, cats in enumerate(oh.categories_):
        inits.append(init("col%d" % j, np.array([j], dtype=np.int64)))
        nodes.append(helper.make_node("ArrayFeatureExtractor", ["X", "col%d" % j], ["x%d" % j], domain=ML))
        nodes.append(helper.make_node("OneHotEncoder", ["x%d" % j], ["oh%d" % j], domain=ML,
                                      cats_int64s=[int(v) for v in cats], zeros=1))
        dims.append(len(cats))
    nodes.append(helper.make_node("FeatureVectorizer", ["oh%d" % j for j in range(len(dims))], ["variable"],
                                  domain=ML, inputdimensions=dims))
    g = helper.make_graph(nodes, "onehot", [vinfo("X", TensorProto.INT64, ["N", 2])],
                          [vinfo("variable", TensorProto.FLOAT, ["N", sum(dims)])], initializer=inits)
    save("onehot", g, [("X", X)], [("variable", f32(oh.transform(X).toarray()))],
         [{"site": int(r[0]), "model_code": int(r[1])} for r in X[:3]],
         doc="OneHotEncoder(handle_unknown=ignore) over two int64 columns")

    words = np.array(["cold", "normal", "hot", "critical"], dtype=object)
    le = LabelEncoder().fit(words[rng.randint(0, 4, 40)])
    s = words[rng.randint(0, 4, 12)].astype(object)
    out = le.transform(s).astype(np.int64)
    node = helper.make_node("LabelEncoder", ["X"], ["variable"], domain=ML,
                            keys_strings=[str(v) for v in le.classes_],
                            values_int64s=list(range(len(le.classes_))), default_int64=-1)
    g = helper.make_graph([node], "labelencoder", [vinfo("X", TensorProto.STRING, ["N"])],
                          [vinfo("variable", TensorProto.INT64, ["N"])])
    save("labelencoder", g, [("X", s)], [("variable", out)], doc="LabelEncoder strings -> ints (opset 2 form)")

    node = helper.make_node("LabelEncoder", ["X"], ["variable"], domain=ML,
                            keys_int64s=list(range(len(le.classes_))),
                            values_strings=[str(v) for v in le.classes_], default_string="_Unused")
    g = helper.make_graph([node], "labelencoder_inverse", [vinfo("X", TensorProto.INT64, ["N"])],
                          [vinfo("variable", TensorProto.STRING, ["N"])])
    save("labelencoder_inverse", g, [("X", out)], [("variable", le.inverse_transform(out).astype(object))],
         doc="LabelEncoder ints -> strings (opset 2 form)")

    node = helper.make_node("LabelEncoder", ["X"], ["variable"], domain=ML,
                            classes_strings=[str(v) for v in le.classes_], default_int64=-1)
    g = helper.make_graph([node], "labelencoder_v1", [vinfo("X", TensorProto.STRING, ["N"])],
                          [vinfo("variable", TensorProto.INT64, ["N"])])
    save("labelencoder_v1", g, [("X", s)], [("variable", out)], ml_opset=1,
         doc="LabelEncoder strings -> ints (opset 1 form: classes_strings)")


def main():
    np.random.seed(0)
    linear_classifier_models()
    binary_linear_model()
    linear_regressor_model()
    forest_model()
    tree_strings_model()
    gbr_model()
    mlp_model()
    svm_models()
    transformer_models()
    encoder_models()
    for f in sorted(os.listdir(OUT)):
        size = os.path.getsize(os.path.join(OUT, f))
        if size > 1 << 20:
            sys.exit("%s is %d bytes, over 1 MB" % (f, size))


if __name__ == "__main__":
    main()
