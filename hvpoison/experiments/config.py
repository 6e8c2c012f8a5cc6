"""The declarative description of an experiment (a TOML file or a Python dict).

::

    name = "lr-mnist-l2"
    repetitions = 3              # fresh random splits
    seed = 0                     # everything else is derived from it

    [data]                       # hvpoison.data.load_task
    task = "mnist"               # mnist | fmnist | cifar10 | mnist-mini | synthetic2d
    n_tr = 1000                  # n_val: n_tr/10 (CIFAR-10: n_tr/5); n_test: 2000

    [model]
    kind = "lr"                  # lr | mlp (sizes = hidden layer widths, slope)

    [defense]
    penalty = "l2"               # l2 | l1
    settings = ["none", "large", "cv", "learned"]     # and "learned_per_layer" for the MLP
    lam_large = -1.0             # the "large constant" lam
    lam_init = -4.0              # initL for learned lam

    [attack]                     # hvpoison.attack
    method = "alg2"              # alg2 (the paper's Alg. 2) | strong | flip (hvpoison.methods)
                                 # | all (each in OUT/<method>/, the worst case in OUT/)
    victim = "gd"                # the victim the attack anticipates: gd | exact (LR + L2)
    n_poison = 40
    n_batches = 5
    iters = 30                   # default: the method's (alg2 30, strong 100; MLP 40)
    alpha = 1.0                  # default: the method's (alg2 1.0, strong's Adam 0.02;
                                 # the MLP's strong: its normalised step, 1.0)
    placement = "replace"        # replace: batches take clean rows' places (the paper's);
                                 # add: appended, the clean set kept (the literature's)
    check_lam = "final"          # the MLP's strong (and all) with a learned lam: score its
                                 # checked iterates at the batch's last lam; "own": each at
                                 # its own (the recipe before 2026-12-06)

    [test]                       # training after the attack, then the test error
    victims = ["gd", "exact"]    # every poisoned set is trained by each; the first is the
                                 # main one ("gd" alone by default)
    T = 200                      # the gd victim's steps and step size
    eta = 0.1
    kuncheva_k = [50, 100, 200]
    starts = 1                   # the MLP's gd victim: trained from this many Xavier
                                 # draws per record, its test error the mean (> 1 only
                                 # for model.kind = "mlp"; LR's GD starts from zeros)

Every key has a default (``Experiment()``); an unknown key or a value of the wrong type is
an error naming it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..methods import METHODS
from ..victims import VICTIMS

SETTINGS = ("none", "large", "cv", "learned", "learned_per_layer")
#: the settings whose lam the defender does not learn, so that their floor is cheap
#: (:meth:`Experiment.floor`)
FIXED_SETTINGS = ("none", "large")


#: byte-order marks an experiment file may start with, and their encodings
BOMS = ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))


def toml_text(raw: bytes, path) -> str:
    """The text of an experiment file: UTF-8, or with a byte-order mark UTF-8 or UTF-16 (as
    editors on Windows save it); anything else is an error naming the file and encoding."""
    encoding = next((enc for bom, enc in BOMS if raw.startswith(bom)), "utf-8")
    if encoding == "utf-8" and b"\x00" in raw:
        raise ValueError(f"{path}: expected a TOML file in UTF-8 (or UTF-8/UTF-16 with a "
                         f"byte-order mark), got NUL bytes from byte {raw.index(0)} (UTF-16 "
                         "without a byte-order mark? save it as UTF-8)")
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        hint = ""
        raise ValueError(f"{path}: expected a TOML file in UTF-8 (or UTF-8/UTF-16 with a "
                         f"byte-order mark), got bytes that are not {encoding} at byte "
                         f"{exc.start}{hint}") from None


#: the largest log-scale lam whose exp is a finite float64
EXP_MAX = math.log(1.7976931348623157e308)


def safe_name(name) -> bool:
    """Whether ``name`` is one plain folder name: ``results/<name>`` stays inside
    ``results/`` (not ``..``, ``.``, a path, a control character or blank padding)."""
    return isinstance(name, str) and bool(name) and name not in (".", "..") and \
        name == name.strip() and not any(c in name for c in "/\\") and \
        all(c.isprintable() for c in name)


@dataclass
class Data:
    task: str = "mnist"
    n_tr: int = 1000
    n_val: int | None = None
    n_test: int = 2000
    data_dir: str | None = None


@dataclass
class Model:
    kind: str = "lr"
    hidden: list = field(default_factory=lambda: [32, 16])
    slope: float = 0.01


@dataclass
class Defense:
    penalty: str = "l2"
    settings: list = field(default_factory=lambda: ["none", "large", "cv", "learned"])
    lam_large: float = -1.0
    lam_init: float = -4.0
    cv_grid: list = field(default_factory=lambda: [-8.0, -7.0, -6.0, -5.0, -4.0, -3.0, -2.0,
                                                   -1.0])
    cv_folds: int = 5


@dataclass
class Attack:
    method: str = "alg2"
    victim: str = "gd"
    n_poison: int = 40
    n_batches: int = 5
    iters: int | None = None
    T: int = 200
    eta: float = 0.1               # or "auto": c / L (hvpoison.stepsize)
    alpha: float | None = None
    alpha_lam: float = 0.2
    lam_bounds: list = field(default_factory=lambda: [-10.0, 4.0])
    restarts: int = 1
    memory: str = "store"
    placement: str = "replace"     # or "add": points appended, the clean set kept
    check_lam: str = "final"       # the MLP's strong, learned lam: or "own" (before 2026-12-06)


@dataclass
class Test:
    victims: list = field(default_factory=lambda: ["gd"])
    T: int = 200
    eta: float = 0.1               # or "auto": the attack's rule, on the clean data
    kuncheva_k: list = field(default_factory=lambda: [50, 100, 200])
    starts: int = 1                # the MLP's GD victim: Xavier draws per record (mean)


@dataclass
class Experiment:
    name: str = "experiment"
    repetitions: int = 1
    seed: int = 0
    data: Data = field(default_factory=Data)
    model: Model = field(default_factory=Model)
    defense: Defense = field(default_factory=Defense)
    attack: Attack = field(default_factory=Attack)
    test: Test = field(default_factory=Test)

    # -- construction and checks ------------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict, where="experiment") -> "Experiment":
        return _build(cls, d, where)

    @classmethod
    def from_toml(cls, path) -> "Experiment":
        import tomllib

        path = Path(path)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise ValueError(f"EXPERIMENT: expected a TOML file, got {str(path)!r} "
                             "(no such file)") from None
        except IsADirectoryError:
            raise ValueError(f"EXPERIMENT: expected a TOML file, got {str(path)!r} "
                             "(a directory)") from None
        try:
            d = tomllib.loads(toml_text(raw, path))
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: not valid TOML: {exc}") from None
        return cls.from_dict(d, where=str(path))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def floor(self) -> "Experiment | None":
        """The floor shown beside this experiment's attack: the same experiment with
        ``[attack] method = "flip"`` (initDp's label-flipped validation clones, not
        optimised) on its settings whose ``lam`` is fixed (:data:`FIXED_SETTINGS`: no
        ``lam`` to learn, so no optimisation at all: a few trainings per record), named
        ``<name>-floor``. None where the attack is ``flip`` itself or ``all`` (which runs
        flip among its methods), or where every setting learns ``lam`` (their floor,
        ``method = "flip"``, costs about what the attack does)."""
        settings = [s for s in self.defense.settings if s in FIXED_SETTINGS]
        if self.attack.method in ("flip", "all") or not settings:
            return None
        d = self.to_dict()
        d["name"] = f"{self.name}-floor"
        d["defense"]["settings"] = settings
        d["attack"].update(method="flip", alpha=None)
        return Experiment.from_dict(d, where=f"the floor of {self.name}")

    def fingerprint(self, undefended=False) -> str:
        """A hash of everything that changes the results (not of ``name``).

        ``undefended=True``: of what the ``"none"`` setting's records depend on, i.e.
        everything but ``[defense]``; two experiments that differ only in the penalty (the
        L2 and L1 runs of a figure) share those records. The Exact victim never tests
        them (no penalty: no unique optimum), so ``[test] victims`` counts without it."""
        d = self.to_dict()
        d.pop("name")
        d["data"].pop("data_dir")
        a = d["attack"]
        strong = a["method"] == "strong"
        mlp_strong = strong and d["model"]["kind"] == "mlp"
        a["iters"] = a["iters"] if a["iters"] is not None else (
            40 if mlp_strong else 100 if strong else 30)
        a["alpha"] = a["alpha"] if a["alpha"] is not None else (
            1.0 if mlp_strong or not strong else 0.02)
        if mlp_strong:            # the recipe of hvpoison.methods.strong_mlp (2026-12-05)
            a["recipe"] = "strong-mlp-checked"
        check_lam = a.pop("check_lam")    # "own" hashes as before the key existed; the
        if d["model"]["kind"] == "mlp" and a["method"] in ("strong", "all") and \
                check_lam != "own" and not undefended:     # undefended learn no lam
            a["check_lam"] = check_lam
        if a["method"] == "alg2" and a["victim"] == "gd":      # as before these keys existed
            del a["method"], a["victim"]
        if a["placement"] == "replace":                        # as before placement existed
            del a["placement"]
        if undefended:
            d.pop("defense")
            d["test"]["victims"] = [v for v in d["test"]["victims"] if v != "exact"]
        if d["test"]["victims"] == ["gd"]:
            del d["test"]["victims"]
        if d["test"]["starts"] == 1:                           # as before starts existed
            del d["test"]["starts"]
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def validate(self) -> "Experiment":
        """Check every value, alone and against the others; raises ``ValueError`` naming
        the first bad key (in the order below), else returns ``self``."""
        for check in (self._validate_choices, self._validate_settings,
                      self._validate_method, self._validate_victims,
                      self._validate_attack_steps, self._validate_values,
                      self._validate_counts, self._validate_rates, self._validate_budget):
            check(_bad)
        return self

    def _validate_choices(self, bad):
        """The task, the model kind and the penalty: one of the known names."""
        from ..data.tasks import TASKS

        tasks = sorted(TASKS) + ["synthetic2d"]
        if self.data.task not in tasks:
            bad("data.task", f"one of {tasks}", self.data.task)
        if self.model.kind not in ("lr", "mlp"):
            bad("model.kind", "'lr' or 'mlp'", self.model.kind)
        if self.defense.penalty not in ("l2", "l1"):
            bad("defense.penalty", "'l2' or 'l1'", self.defense.penalty)

    def _validate_settings(self, bad):
        """``[defense] settings``: a non-empty list of distinct settings the model has."""
        if not self.defense.settings:
            bad("defense.settings", f"a non-empty list from {list(SETTINGS)}", [])
        for s in self.defense.settings:
            if s not in SETTINGS:
                bad("defense.settings", f"entries from {list(SETTINGS)}", s)
        if len(set(self.defense.settings)) != len(self.defense.settings):
            bad("defense.settings", "no duplicates", self.defense.settings)
        if "learned_per_layer" in self.defense.settings and self.model.kind == "lr":
            bad("defense.settings", "'learned_per_layer' only with model.kind = 'mlp'",
                self.defense.settings)

    def _validate_method(self, bad):
        """``[attack] method`` and ``victim``: known names that go together."""
        a = self.attack
        if a.method not in METHODS + ("all",):
            bad("attack.method", f"one of {list(METHODS) + ['all']}", a.method)
        if a.victim not in VICTIMS:
            bad("attack.victim", f"one of {list(VICTIMS)}", a.victim)
        if a.method == "alg2" and a.victim != "gd":
            bad("attack.victim", "'gd' with attack.method = 'alg2' (Alg. 2 differentiates "
                "T gradient steps; use method = 'strong' against 'exact')", a.victim)

    def _validate_victims(self, bad):
        """``[test] victims``, and the Exact victim only where it has a unique optimum."""
        a, v = self.attack, self.test.victims
        if not v or any(x not in VICTIMS for x in v) or len(set(v)) != len(v):
            bad("test.victims", f"a non-empty list of distinct entries from {list(VICTIMS)}", v)
        exact_needs = "model.kind = 'lr' and defense.penalty = 'l2'"
        if ("exact" in v or a.victim == "exact") and (self.model.kind != "lr" or
                                                       self.defense.penalty != "l2"):
            bad("test.victims" if "exact" in v else "attack.victim",
                f"'exact' only with {exact_needs} (a unique smooth optimum)",
                v if "exact" in v else a.victim)
        if a.victim == "exact" and "none" in self.defense.settings:
            bad("defense.settings", "no 'none' with attack.victim = 'exact' (an unpenalised "
                "LR need not have an optimum)", self.defense.settings)

    def _validate_attack_steps(self, bad):
        """``[attack] placement``, ``iters`` and ``alpha``, as the method takes them."""
        a = self.attack
        if a.placement not in ("replace", "add"):
            bad("attack.placement", "'replace' or 'add'", a.placement)
        if a.check_lam not in ("own", "final"):
            bad("attack.check_lam", "'own' or 'final'", a.check_lam)
        if a.iters is not None and a.iters <= 0:
            bad("attack.iters", "a positive integer", a.iters)
        if a.alpha is not None and not a.alpha > 0:
            bad("attack.alpha", "a positive number", a.alpha)
        if a.alpha is not None and a.method in ("flip", "all"):
            bad("attack.alpha", f"no value with attack.method = {a.method!r} ("
                + ("it takes no step)" if a.method == "flip" else
                   "each method takes its own step)"), a.alpha)

    def _validate_counts(self, bad):
        """The sizes and counts: positive integers (``attack.n_batches``: non-negative)."""
        for key, v in (("repetitions", self.repetitions), ("data.n_tr", self.data.n_tr),
                       ("data.n_test", self.data.n_test),
                       ("attack.n_poison", self.attack.n_poison),
                       ("attack.T", self.attack.T),
                       ("attack.restarts", self.attack.restarts), ("test.T", self.test.T),
                       ("test.starts", self.test.starts),
                       ("defense.cv_folds", self.defense.cv_folds)):
            if v <= 0:
                bad(key, "a positive integer", v)
        if self.attack.n_batches < 0:
            bad("attack.n_batches", "a non-negative integer", self.attack.n_batches)
        if self.test.starts > 1 and self.model.kind != "mlp":
            bad("test.starts", "1 with model.kind = 'lr' (its GD victim starts from zeros: "
                "every start is the same)", self.test.starts)

    def _validate_rates(self, bad):
        """The step sizes: positive finite numbers (the ``eta``: or ``"auto"``)."""
        for key, v in (("attack.eta", self.attack.eta),
                       ("attack.alpha_lam", self.attack.alpha_lam),
                       ("test.eta", self.test.eta), ("attack.alpha", self.attack.alpha)):
            if key.endswith(".eta") and v == "auto":
                continue
            if v is not None and not (v > 0 and math.isfinite(v)):
                bad(key, "a positive finite number" + (" or 'auto'" if key.endswith(".eta")
                                                       else ""), v)

    def _validate_budget(self, bad):
        """``[attack] memory``, and the replaced rows: at most the training set."""
        if self.attack.memory not in ("store", "checkpoint", "reverse"):
            bad("attack.memory", "'store', 'checkpoint' or 'reverse'", self.attack.memory)
        if self.attack.placement == "replace" and \
                self.attack.n_poison * self.attack.n_batches > self.data.n_tr:
            bad("attack.n_poison * attack.n_batches", f"at most data.n_tr = {self.data.n_tr}",
                self.attack.n_poison * self.attack.n_batches)

    def _validate_values(self, bad):
        """The ranges of the keys a record would otherwise trip over only when it starts."""
        def finite(x):
            return isinstance(x, (int, float)) and not isinstance(x, bool) and \
                math.isfinite(x)

        if not safe_name(self.name):
            bad("name", "a plain folder name that stays inside results/ (not '.' or '..', no "
                "'/' or '\\', no control characters or leading/trailing spaces)", self.name)
        if self.seed < 0:
            bad("seed", "a non-negative integer", self.seed)
        if self.data.n_val is not None and self.data.n_val <= 0:
            bad("data.n_val", "a positive integer (or no key: the task's default)",
                self.data.n_val)
        lb = self.attack.lam_bounds
        if len(lb) != 2 or not all(finite(x) for x in lb) or not lb[0] < lb[1]:
            bad("attack.lam_bounds", "[low, high] with finite low < high", lb)
        for key, v in (("defense.lam_large", self.defense.lam_large),
                       ("defense.lam_init", self.defense.lam_init),
                       ("attack.lam_bounds", lb[1] if lb and finite(lb[-1]) else 0.0)):
            if not finite(v):
                bad(key, "a finite number (log-scale lam)", v)
            if v >= EXP_MAX:                    # exp(lam) would overflow: NaN losses
                bad(key, f"a log-scale lam with a finite exp(lam) (below {EXP_MAX:.1f})", v)
        if not lb[0] <= self.defense.lam_init <= lb[1]:
            bad("defense.lam_init", f"a value inside attack.lam_bounds {lb}",
                self.defense.lam_init)
        if not self.defense.cv_grid or not all(finite(x) for x in self.defense.cv_grid):
            bad("defense.cv_grid", "a non-empty list of finite numbers", self.defense.cv_grid)
        if not 2 <= self.defense.cv_folds <= self.data.n_tr:
            bad("defense.cv_folds", f"an integer in [2, data.n_tr = {self.data.n_tr}]",
                self.defense.cv_folds)
        k = self.test.kuncheva_k
        if not all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in k):
            bad("test.kuncheva_k", "a list of positive integers", k)
        m = self.model
        if not m.hidden or not all(isinstance(x, int) and not isinstance(x, bool) and x > 0
                                   for x in m.hidden):
            bad("model.hidden", "a non-empty list of positive integers (hidden widths)",
                m.hidden)
        if not (finite(m.slope) and m.slope >= 0):
            bad("model.slope", "a finite number >= 0 (the Leaky-ReLU slope)", m.slope)
        if m.kind == "lr" and (m.hidden != Model().hidden or m.slope != Model().slope):
            bad("model.hidden" if m.hidden != Model().hidden else "model.slope",
                "no value with model.kind = 'lr' (they set the MLP's layers)",
                m.hidden if m.hidden != Model().hidden else m.slope)


def _bad(key, expected, got):
    """Raise the ``ValueError`` of a bad value: ``"key: expected ..., got ..."``."""
    raise ValueError(f"{key}: expected {expected}, got {got!r}")


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def differing_keys(a: dict, b: dict) -> list:
    """``[(key, value in a, value in b), ...]`` of the keys (``attack.method``) where two
    experiment configurations (``Experiment.to_dict()``) differ; ``name`` and
    ``data.data_dir`` do not change results and are left out."""
    fa, fb = _flat(a), _flat(b)
    return [(k, fa.get(k), fb.get(k)) for k in sorted(set(fa) | set(fb))
            if k not in ("name", "data.data_dir") and fa.get(k) != fb.get(k)]


def _build(cls, d, where):
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected a table of keys, got {type(d).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in d.items():
        if key not in fields:
            raise ValueError(f"{where}.{key}: unknown key; expected one of {sorted(fields)}")
        f, name = fields[key], f"{where}.{key}"
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING \
            else f.default
        if dataclasses.is_dataclass(default):
            kwargs[key] = _build(type(default), value, name)
        else:
            kwargs[key] = _coerce(name, value, default, f.type)
    return cls(**kwargs).validate() if cls is Experiment else cls(**kwargs)


def _coerce(name, value, default, type_):
    optional = "None" in str(type_)
    if value is None and optional:
        return None
    if name.endswith(".eta") and value == "auto":      # c / L from the Hessian (stepsize.py)
        return value
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int) or "int" in str(type_):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float) or "float" in str(type_):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, str) or "str" in str(type_):
        ok = isinstance(value, str)
    elif isinstance(default, list):
        ok = isinstance(value, list)
    else:  # pragma: no cover - every field has one of the types above
        ok = True
    if not ok:
        kind = type(default).__name__ if default is not None else \
            str(type_).replace(" | None", "")
        kind += " or 'auto'" if name.endswith(".eta") else ""
        raise ValueError(f"{name}: expected {kind}, got {value!r}")
    return value
