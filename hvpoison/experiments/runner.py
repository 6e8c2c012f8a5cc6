"""Run an :class:`~hvpoison.experiments.config.Experiment`: serially, on local cores, or on a
Dask cluster, resumably.

The work is split into *units*, one per (repetition, setting, batch ``b``); unit ``b`` needs
the poisoning points of batches ``1..b-1`` (Alg. 2's cumulative fractions) and, for the
``cv`` setting, the repetition's ``lam_CV``. The driver keeps every ready unit in flight,
writes each result as one record the moment it arrives (:mod:`.store`), then submits the
units it unblocks. Every unit draws its randomness from seeds derived from
``(seed, repetition)`` only, and computes with one BLAS thread (:func:`one_blas_thread`),
so the records are the same (to rounding: a numpy sum's last bit can follow memory
alignment) whatever the scheduler, the number of workers, the order of completion, or how
often the run was interrupted and resumed. On Dask a split is the
result of a task (:func:`load_split_task`), so the loss of any worker is recomputed.
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import sys
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from .config import Experiment
from .store import Store
from .summary import summarize


@dataclass(frozen=True)
class Unit:
    rep: int
    setting: str          # a defense setting, or "cv" for the lam_CV search
    b: int | None = None  # batch index (fraction b * n_poison / n_tr); None for "cv"


def seeds(exp: Experiment, rep: int) -> dict:
    """The seeds of repetition ``rep``: its split, the attack, the model initialisation."""
    s = np.random.SeedSequence([exp.seed, rep]).generate_state(3)
    return {"split": int(s[0]), "attack": int(s[1]), "init": int(s[2])}


def load_split(exp: Experiment, rep: int, data_dir=None):
    from ..data import load_task

    d = exp.data
    return load_task(d.task, d.n_tr, d.n_val, d.n_test, seed=seeds(exp, rep)["split"],
                     data_dir=data_dir if data_dir is not None else d.data_dir)


def victim(exp: Experiment, setting: str, d: int, lam_cv=None):
    """``(Objective, lam, learn_lam)`` of a defense setting."""
    from .. import LR, MLP, Objective

    m = exp.model
    model = LR(d) if m.kind == "lr" else MLP((d, *m.hidden, 1), slope=m.slope)
    penalty = None if setting == "none" else exp.defense.penalty
    obj = Objective(model, penalty, per_layer=(setting == "learned_per_layer"))
    lam = {"none": None, "large": exp.defense.lam_large, "cv": lam_cv,
           "learned": exp.defense.lam_init,
           "learned_per_layer": [exp.defense.lam_init] * model.n_layers}[setting]
    return obj, (np.array(lam, float) if isinstance(lam, list) else lam), \
        setting.startswith("learned")


@contextmanager
def one_blas_thread():
    """Every unit computes with one BLAS thread, whichever executor runs it (threadpoolctl):
    a sum over threads changes the order of additions, so this is what makes a serial run,
    ``--jobs N`` and a Dask cluster give the same records on the same machine and
    libraries. Parallelism comes from running units side by side (``--jobs``)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def load_split_task(exp_dict: dict, rep: int, data_dir=None):
    """:func:`load_split` as a task: Dask keeps the split as the result of this task, not
    as scattered data, so when the worker holding it is lost the scheduler computes it
    again (it depends only on ``(seed, rep)``); the workers need the dataset files."""
    return load_split(Experiment.from_dict(exp_dict), rep, data_dir)


def preflight(exp: Experiment, split):
    """What the data decides about the configuration, checked before any work: every fixed
    ``lam`` (the "none" and "large" settings) must let gradient descent at ``[attack]`` and
    ``[test] eta`` train on the clean training set of repetition 0 (``eta < 2 / L``, ``L``
    the largest curvature at ``w_0 = 0``: :func:`hvpoison.stepsize.curvature`). LR only
    (the MLP's curvature moves with ``w``; its training raises
    :class:`~hvpoison.hypergrad.result.DivergenceError` instead); a learned ``lam`` that
    climbs past the stable range raises that error, naming ``eta`` and ``lam``."""
    from ..stepsize import curvature

    if exp.model.kind != "lr":
        return
    d = split.Xtr.shape[1]
    for setting in [s for s in ("none", "large") if s in exp.defense.settings]:
        obj, lam, _ = victim(exp, setting, d)
        L = curvature(obj, np.zeros(obj.model.n_params), split.Xtr, split.ytr, lam)
        for key, eta in (("attack.eta", exp.attack.eta), ("test.eta", exp.test.eta)):
            if eta != "auto" and eta >= 2 / L:          # "auto" is c / L with c < 2
                what = "defense.lam_large" if setting == "large" else key
                got = exp.defense.lam_large if setting == "large" else eta
                raise ValueError(
                    f"{what}: expected a value at which gradient descent with {key} = {eta:g}"
                    f" trains {_setting_text(exp, setting)} ({key} < 2 / L = {2 / L:.3g}, L ~ "
                    f"{L:.3g} the largest curvature on the clean training set), got {got!r}:"
                    f" lower {key}" + (" or defense.lam_large" if setting == "large" else ""))


def _setting_text(exp, setting) -> str:
    """A fixed setting by value: ``"lam = -6.9 (setting 'large')"``, ``"no penalty
    (setting 'none')"``."""
    what = "no penalty" if setting == "none" else f"lam = {exp.defense.lam_large:g}"
    return f"{what} (setting {setting!r})"


def run_cv(exp_dict: dict, rep: int, split) -> dict:
    """``lam_CV``: K-fold cross-validation on the clean training set of repetition ``rep``."""
    with one_blas_thread():
        return _run_cv(exp_dict, rep, split)


def _run_cv(exp_dict, rep, split):
    from ..evaluate import lam_cv

    exp = Experiment.from_dict(exp_dict)
    obj, _, _ = victim(exp, "large", split.Xtr.shape[1])
    t0 = time.perf_counter()
    lam, losses = lam_cv(obj, split.Xtr, split.ytr, exp.defense.cv_grid,
                         K=exp.defense.cv_folds, T=exp.test.T, eta=exp.test.eta,
                         seed=seeds(exp, rep)["init"])
    return {"rep": rep, "lam_cv": lam, "grid": list(exp.defense.cv_grid),
            "cv_loss": losses.tolist(), "seconds": time.perf_counter() - t0}


def run_unit(exp_dict: dict, unit: Unit, split, blocks: list, lam_cv=None, lam0=None,
             tick=None):
    """One (repetition, setting, batch) unit: Alg. 2 for batch ``unit.b`` on top of the
    frozen ``blocks`` ``[(rows, Xp, yp), ...]`` of batches ``1..b-1``, then the test.

    Returns ``(record, arrays)``; ``lam0`` is the setting's lam at fraction 0 (the clean
    model Kuncheva's index compares against; None for ``b = 0``); ``tick(k, iters)``, if
    given, is called after each hyperiteration (``hv.attack``'s ``progress``)."""
    with one_blas_thread():
        return _run_unit(exp_dict, unit, split, blocks, lam_cv, lam0, tick)


def _run_unit(exp_dict, unit, split, blocks, lam_cv, lam0, tick=None):
    from ..attack import attack

    exp = Experiment.from_dict(exp_dict)
    a, b, sd = exp.attack, unit.b, seeds(exp, unit.rep)
    obj, lam, learn = victim(exp, unit.setting, split.Xtr.shape[1], lam_cv)
    X, y = _training_set(split, blocks, a.placement)
    t0 = time.perf_counter()
    batch = attack(obj, split.Xtr, split.ytr, split.Xval, split.yval, n_poison=a.n_poison,
                   n_batches=b, iters=a.iters, T=a.T, eta=a.eta, alpha=a.alpha,
                   alpha_lam=a.alpha_lam, lam=lam, learn_lam=learn,
                   lam_bounds=tuple(a.lam_bounds), box=split.box, restarts=a.restarts,
                   seed=sd["attack"], memory=a.memory, victim=a.victim, method=a.method,
                   placement=a.placement, check_lam=a.check_lam if exp.model.kind == "mlp"
                   and a.method == "strong" else None,
                   start=None if b == 0 else (b - 1, X, y),
                   progress=None if tick is None else
                   (lambda done, total, batch: tick(done, total)))[-1]
    t1 = time.perf_counter()
    lam0 = batch.lam if b == 0 else (np.array(lam0) if isinstance(lam0, list) else lam0)
    eta = victim_eta(exp, obj, split, lam0, learn)
    tests = {v: victim_test(exp, v, obj, batch, split, lam0, sd["init"], eta)
             for v in exp.test.victims}
    main = tests[exp.test.victims[0]]
    if main is None:                          # the first victim does not apply: the paper's
        main = victim_test(exp, "gd", obj, batch, split, lam0, sd["init"], eta)
    record = {
        "rep": unit.rep, "setting": unit.setting, "b": b, "fraction": batch.fraction,
        "test_error": main["test_error"], "train_error": main["train_error"],
        "lam": _plain(batch.lam), "lam0": _plain(lam0),
        "w_norm2": main["w_norm2"], "kuncheva": main["kuncheva"],
        **({"test_errors": main["test_errors"]} if "test_errors" in main else {}),
        "outer": batch.trace.get("outer", []), "outer_final": batch.trace.get("final"),
        "lam_trace": batch.trace.get("lam", []), "seeds": sd,
        "seconds": {"attack": t1 - t0, "test": time.perf_counter() - t1},
    }
    if "auto" in (a.eta, exp.test.eta):                  # the steps "auto" resolved to
        record["eta"] = {"attack": batch.trace.get("eta"), "test": eta}
    if exp.test.victims != ["gd"]:
        record["victims"] = {v: None if t is None else
                             {k: t[k] for k in ("test_error", "train_error", "val_loss")}
                             for v, t in tests.items()}
    return record, _unit_arrays(batch, blocks, b)


def _training_set(split, blocks, placement):
    """``(X, y)``: the clean training set with the earlier batches' points ``blocks`` in
    their rows (``"add"``: appended after the clean rows first)."""
    X, y = split.Xtr.copy(), split.ytr.copy()
    if placement == "add":               # the earlier batches' points, after the clean rows
        X, y = (np.concatenate([X] + [Xp for _, Xp, _ in blocks]),
                np.concatenate([y] + [yp for _, _, yp in blocks]))
    for rows, Xp, yp in blocks:
        X[rows], y[rows] = Xp, yp
    return X, y


def _unit_arrays(batch, blocks, b) -> dict:
    """The arrays of batch ``b``'s record: the rows it poisoned (not those of ``blocks``),
    its points and labels there, and the clones they started as (where known)."""
    old = np.concatenate([r for r, _, _ in blocks]) if blocks else np.array([], np.int64)
    rows = np.setdiff1d(batch.poison_idx, old)
    arrays = {"rows": rows, "Xp": np.asarray(batch.X[rows]), "yp": np.asarray(batch.y[rows]),
              "b": np.asarray(b)}
    if batch.X0 is not None:                              # the clones the points started as
        arrays["X0"] = np.asarray(batch.X0)
    return arrays


def victim_eta(exp, obj, split, lam0, learned):
    """``[test] eta`` as a number: itself, or for ``"auto"`` the attack's rule
    (:func:`hvpoison.stepsize.resolve_eta` on the clean training set, over ``[attack]
    lam_bounds`` for a learned ``lam``, at the fixed ``lam0`` otherwise), so the victim
    tested trains with the step the attack anticipated (for the same ``T``)."""
    from ..stepsize import resolve_eta

    if exp.test.eta != "auto":
        return exp.test.eta
    data = obj.prepare(split.Xtr, split.ytr, lam0 if obj.penalty is not None else None)
    return resolve_eta("auto", obj, data, tuple(exp.attack.lam_bounds) if learned else None)


def start_seeds(seed, starts):
    """The seeds of the ``starts`` Xavier draws the GD victim is tested from: ``seed``
    itself first (so ``starts = 1`` is the single start of before), then ``starts - 1``
    derived from it."""
    extra = np.random.SeedSequence([int(seed), 1]).generate_state(starts - 1) \
        if starts > 1 else []
    return [int(seed)] + [int(s) for s in extra]


def victim_test(exp, name, obj, batch, split, lam0, seed, eta):
    """The test of one victim (``"gd"``: ``[test] T`` steps of ``eta`` (:func:`victim_eta`)
    from ``model.init(s)`` for each of the ``[test] starts`` seeds :func:`start_seeds`;
    ``"exact"``: trained to optimality) on the batch's poisoned set: test and training
    error and validation loss (means over the starts; ``test_errors``: each start's when
    there are several), ``||W_k||^2/P_k`` and Kuncheva's index against the same victim
    trained on the clean set (from the first start); None where the victim does not apply
    (``"exact"`` without an L2 penalty)."""
    from ..evaluate import error, feature_weights, kuncheva, weight_norms
    from ..victims import as_victim

    victim = as_victim(name, exp.test.T, eta)
    if name == "exact" and (victim.unsupported(obj) or batch.lam is None):
        return None
    fits = [victim.fit(obj, batch.X, batch.y, batch.lam, seed=s)
            for s in (start_seeds(seed, exp.test.starts) if name == "gd" else [seed])]
    w = fits[0]
    w_clean = w if batch.fraction == 0 else victim.fit(obj, split.Xtr, split.ytr, lam0,
                                                       seed=seed)
    d = split.Xtr.shape[1]
    fw, fw_clean = feature_weights(obj.model, w), feature_weights(obj.model, w_clean)
    errors = [error(obj.model, v, split.Xte, split.yte) for v in fits]
    out = {"test_error": float(np.mean(errors)),
           "train_error": float(np.mean([error(obj.model, v, batch.X, batch.y)
                                         for v in fits])),
           "val_loss": float(np.mean([obj.val_loss(v, split.Xval, split.yval)
                                      for v in fits])),
           "w_norm2": weight_norms(obj.model, w).tolist(),
           "kuncheva": {str(k): kuncheva(fw, fw_clean, k) for k in exp.test.kuncheva_k
                        if k < d}}
    if len(fits) > 1:
        out["test_errors"] = errors
    return out


def poison_blocks(store, rep, setting, n_batches) -> list:
    """``[(rows, Xp, yp), ...]``: the poisoning points of batches ``1..n_batches`` of the
    attack against ``setting`` in repetition ``rep``, as recorded."""
    out = []
    for b in range(1, n_batches + 1):
        z = store.load_arrays(store.key(rep, setting, b))
        out.append((z["rows"], z["Xp"], z["yp"]))
    return out


def _plain(lam):
    if lam is None:
        return None
    a = np.asarray(lam, dtype=float)
    return float(a) if a.ndim == 0 else a.tolist()


# -- executors: one small interface over inline, process-pool and Dask execution ----------
class _Inline:
    capacity = 1                   # units in flight: one, so each record is written at once

    def submit(self, fn, *args):
        f = cf.Future()
        try:
            f.set_result(fn(*args))
        except BaseException as exc:  # noqa: BLE001 - re-raised by f.result()
            f.set_exception(exc)
        return f

    def wait(self, futures):
        return list(futures)

    def split(self, exp, rep, data_dir):
        """Repetition ``rep``'s split, as the units of this executor take it."""
        return load_split(exp, rep, data_dir)

    def close(self):
        pass


def _die_with_parent(parent):
    """Worker initializer: on Linux, ask the kernel to SIGKILL this worker when the driver
    dies (``PR_SET_PDEATHSIG``), so a killed ``hvpoison run --jobs N`` leaves no orphans."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # 1: PDEATHSIG
        except OSError:                         # pragma: no cover - no libc.so.6
            return
    if os.getppid() != parent:                  # the driver died before the line above
        os._exit(1)


class _Pool(_Inline):
    def __init__(self, n_jobs):
        self.capacity = n_jobs
        self.ex = cf.ProcessPoolExecutor(n_jobs, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_die_with_parent,
                                         initargs=(os.getpid(),))

    def submit(self, fn, *args):
        return self.ex.submit(fn, *args)

    def wait(self, futures):
        return cf.wait(futures, return_when=cf.FIRST_COMPLETED).done

    def close(self):
        self.ex.shutdown(wait=True, cancel_futures=True)


class _Dask(_Inline):
    def __init__(self, client=None, address=None):
        try:
            import distributed
        except ImportError:
            raise ValueError("--scheduler: expected the 'distributed' package "
                             "(pip install 'hvpoison[dask]'), got it missing") from None
        self.distributed = distributed
        self.own = client is None
        self.client = client or distributed.Client(address, timeout="20s")
        self.capacity = 2 * max(1, sum(self.client.nthreads().values()))

    def submit(self, fn, *args):
        return self.client.submit(fn, *args, pure=False)

    def wait(self, futures):
        return set(self.distributed.wait(list(futures), return_when="FIRST_COMPLETED").done)

    def split(self, exp, rep, data_dir):
        return self.client.submit(load_split_task, exp.to_dict(), rep, data_dir, pure=True)

    def close(self):
        if self.own:
            self.client.close()


@contextmanager
def _one_blas_thread_per_worker(n_jobs):
    """Workers share the cores: one BLAS thread each (spawned children read the env)."""
    keys = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    old = {k: os.environ.get(k) for k in keys}
    if n_jobs > 1:
        for k in keys:
            os.environ.setdefault(k, "1")
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _clock(seconds) -> str:
    """``95`` -> ``"1m35s"``; ``4000`` -> ``"1h06m"``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _record_text(rec) -> str:
    if "lam_cv" in rec:
        return f"lam_CV = {rec['lam_cv']:+.1f}"
    lam = rec["lam"]
    lam_s = "" if lam is None else "  lam " + (f"{lam:+.2f}" if isinstance(lam, float)
                                              else " ".join(f"{v:+.2f}" for v in lam))
    return f"{rec['fraction']:5.1%} poisoned  test error {rec['test_error']:.3f}{lam_s}"


class Progress:
    """The default progress report of :func:`run`: one line per finished record with the
    experiment's name, the time so far and an ETA (the mean time of this run's records so
    far, times the records left); on a terminal, a line updated within a record as its
    hyperiterations pass (:meth:`ticker`). Call as ``progress(done, total, key, record)``.

    With ``jobs`` records computed side by side, the first ``jobs`` finish at about the same
    time, one record's time in: a rate taken from the first of them counts the work still
    in flight as none and overstates the ETA up to ``jobs`` times, so the ETA is given
    once ``jobs`` records are done."""

    def __init__(self, name="", stream=None, start_done=0, jobs=1):
        self.name, self.stream = name, stream or sys.stderr
        self.t0, self.start_done, self.jobs = time.perf_counter(), start_done, jobs

    def eta(self, done, total) -> str:
        new, elapsed = done - self.start_done, time.perf_counter() - self.t0
        if new <= 0:
            return f"{_clock(elapsed)} so far"
        if new < self.jobs and done < total:
            return f"{_clock(elapsed)} so far, ETA once {self.jobs} records are done"
        return f"{_clock(elapsed)} so far, ETA {_clock(elapsed / new * (total - done))}"

    def __call__(self, done, total, key, rec):
        secs = sum(rec["seconds"].values()) if isinstance(rec["seconds"], dict) \
            else rec["seconds"]
        clear = "\r\x1b[K" if getattr(self.stream, "isatty", lambda: False)() else ""
        self.stream.write(f"{clear}[{done:>{len(str(total))}}/{total}] "
                          f"{self.name + ' ' if self.name else ''}"
                          f"{key:<18} {_record_text(rec)}  ({secs:.1f} s; "
                          f"{self.eta(done, total)})\n")
        self.stream.flush()

    def ticker(self, key):
        """``tick(k, iters)`` for a record computed in this process: on a terminal, one line
        rewritten at most once a second with the hyperiteration reached; else None."""
        if not getattr(self.stream, "isatty", lambda: False)():
            return None
        t0, last = time.perf_counter(), [0.0]

        def tick(k, iters):
            now = time.perf_counter()
            if now - last[0] >= 1.0 or k == iters:
                last[0] = now
                self.stream.write(f"\r  {key}: hyperiteration {k}/{iters} "
                                  f"({_clock(now - t0)})\x1b[K")
                self.stream.flush()
        return tick


def _print_progress(done, total, key, rec, stream=None):
    """One progress line (:class:`Progress` without a name or an ETA's start)."""
    Progress(stream=stream)(done, total, key, rec)


def _copy_undefended(exp, store, folders, keys) -> dict:
    """Copy the missing ``keys`` (``"none"`` records) from those ``folders`` whose experiment
    has ``exp``'s undefended fingerprint; returns ``{key: folder}`` of the copies."""
    fp, copied = exp.fingerprint(undefended=True), {}
    missing = [k for k in keys if not store.has(k)]
    for folder in folders:
        other = Store(folder)
        if not missing or other.out.resolve() == store.out.resolve() or \
                other.undefended_fingerprint() != fp:
            continue
        for k in list(missing):
            if store.copy_from(other, k, exp.fingerprint()):
                copied[k] = str(other.out)
                missing.remove(k)
    return copied


def run(exp, out, *, n_jobs=1, scheduler=None, client=None, overwrite=False, progress=True,
        data_dir=None, max_records=None, reuse=()) -> dict:
    """Run (or resume) ``exp`` into the folder ``out``; returns the summary.

    ``n_jobs``: local worker processes (1 = in this process); ``scheduler`` (an address such
    as ``"tcp://host:8786"``) or ``client`` (a ``distributed.Client``): run on Dask instead.
    ``progress``: True prints one line per record to stderr, a callable receives
    ``(done, total, key, record)``. ``max_records`` stops after that many new records (for
    tests and for spreading a long run over sessions). Re-running resumes: finished records
    are kept, and only the missing ones are computed. ``reuse``: folders of other
    experiments; a missing ``"none"`` record is copied from one whose experiment differs
    from ``exp`` only in ``[defense]`` (the undefended victim never reads it), instead of
    being computed again. ``[attack] method = "all"``: every method in ``out/<method>/``,
    and the worst case per setting and fraction, with its method, as the summary in ``out``
    (:mod:`.worst`).

    The folder is locked while the run lasts (a second run on it stops at once with a
    ``ValueError``), and every record found is validated first: a corrupt or inconsistent
    one moves to ``records/quarantine/`` with a warning naming it and is computed again.
    """
    if isinstance(exp, dict):
        exp = Experiment.from_dict(exp)
    elif not isinstance(exp, Experiment):
        raise TypeError(f"exp: expected an Experiment or a dict, got {type(exp).__name__}")
    if exp.attack.method == "all":                     # every method, then the worst case
        from .worst import run_all

        return run_all(exp.validate(), out, run, n_jobs=n_jobs, scheduler=scheduler,
                       client=client, overwrite=overwrite, progress=progress,
                       data_dir=data_dir, max_records=max_records, reuse=reuse)
    store = check(exp, out, data_dir)
    with store.lock():
        return _run_locked(exp, store, n_jobs, scheduler, client, overwrite, progress,
                           data_dir, max_records, reuse)


def check(exp: Experiment, out, data_dir=None) -> Store:
    """Every check that needs no work: the configuration (:meth:`Experiment.validate`) and,
    unless ``out`` holds a finished run of it, what the data decides (:func:`preflight`);
    raises ``ValueError`` naming the key. :func:`run` calls it first; the CLI too, before it
    prints anything."""
    exp.validate()
    store = Store(out)
    if store.finished(exp) is None:
        preflight(exp, load_split(exp, 0, data_dir))
    return store


def _run_locked(exp, store, n_jobs, scheduler, client, overwrite, progress, data_dir,
                max_records, reuse):
    """:func:`run` inside the folder's lock: open the store, plan the units, copy what
    ``reuse`` offers, report, run the rest on the executor, summarise."""
    _open_store(exp, store, overwrite, progress)
    units = _plan(exp)
    copied = _copy_undefended(exp, store, reuse,
                              [_key(store, u) for u in units if u.setting == "none"])
    done = {u for u in units if store.has(_key(store, u))}
    local_jobs = n_jobs if client is None and scheduler is None else 1
    report = _reporter(exp, store, progress, len(units), len(done), copied, local_jobs)
    ex = _executor(n_jobs, scheduler, client)
    with _one_blas_thread_per_worker(local_jobs):
        _Driver(exp, store, ex, units, done, report, data_dir).drive(max_records)
    return summarize(exp, store)


def _open_store(exp, store, overwrite, progress):
    """Open the folder for ``exp``; each corrupt record found (quarantined, to be redone) is
    a line on stderr with a progress report, else a ``UserWarning``."""
    store.open(exp, overwrite=overwrite)
    for _, message in store.validate(exp):
        if progress:
            sys.stderr.write(f"warning: {message}\n")
        else:
            warnings.warn(message, UserWarning, stacklevel=4)     # at the caller of run()


def _plan(exp) -> list:
    """Every unit of ``exp``, in submission order: the lam_CV searches, then each
    repetition's settings' batches ``0..n_batches``."""
    reps, settings, nb = range(exp.repetitions), exp.defense.settings, exp.attack.n_batches
    units = [Unit(r, "cv") for r in reps if "cv" in settings]
    units += [Unit(r, s, b) for r in reps for s in settings for b in range(nb + 1)]
    return units


def _key(store, u) -> str:
    """The record key of unit ``u``."""
    return store.key(u.rep, u.setting, u.b)


def _reporter(exp, store, progress, total, n_done, copied, jobs=1):
    """The progress report (``progress`` itself if callable, a :class:`Progress` if true,
    else None; ``jobs``: the local worker processes); a :class:`Progress` first says what is
    left to compute and what was copied."""
    report = progress if callable(progress) else \
        (Progress(exp.name, start_done=n_done, jobs=jobs) if progress else None)
    if isinstance(report, Progress):
        sys.stderr.write(f"{exp.name}: {total - n_done} of {total} records to compute -> "
                         f"{store.out}\n")
        if copied:
            sys.stderr.write(f"{len(copied)} records of the undefended victim copied from "
                             f"{', '.join(sorted(set(copied.values())))}\n")
    return report


def _executor(n_jobs, scheduler, client):
    """Dask with a ``scheduler`` or ``client``, else ``n_jobs`` local processes (1: inline)."""
    if scheduler is not None or client is not None:
        return _Dask(client, scheduler)
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1:
        raise ValueError(f"n_jobs: expected a positive integer, got {n_jobs!r}")
    return _Pool(n_jobs) if n_jobs > 1 else _Inline()


class _Driver:
    """Keeps every ready unit in flight on the executor and saves each result as it
    arrives; ``done`` (the units recorded) grows as they do."""

    def __init__(self, exp, store, ex, units, done, report, data_dir):
        self.exp, self.store, self.ex, self.units = exp, store, ex, units
        self.done, self.report, self.data_dir = done, report, data_dir
        self.exp_dict, self.fingerprint = exp.to_dict(), exp.fingerprint()
        self.splits, self.running = {}, {}
        self.n_done, self.n_new = len(done), 0

    def split_of(self, rep):
        """Repetition ``rep``'s split, loaded (or submitted) once."""
        if rep not in self.splits:
            self.splits[rep] = self.ex.split(self.exp, rep, self.data_dir)
        return self.splits[rep]

    def ready(self, u) -> bool:
        """Whether ``u`` is still to do and the units it needs are recorded."""
        if u in self.done:
            return False
        if u.b is None:                                   # the lam_CV search
            return True
        if u.b and Unit(u.rep, u.setting, u.b - 1) not in self.done:
            return False
        return u.setting != "cv" or Unit(u.rep, "cv") in self.done

    def submit(self, u):
        """Submit ``u`` with what it needs from the records; returns its future."""
        store, sp = self.store, self.split_of(u.rep)
        if u.b is None:
            return self.ex.submit(run_cv, self.exp_dict, u.rep, sp)
        lam_cv = store.load(store.key(u.rep, "cv"))["lam_cv"] if u.setting == "cv" else None
        blocks = poison_blocks(store, u.rep, u.setting, u.b - 1)
        lam0 = store.load(store.key(u.rep, u.setting, 0))["lam0"] if u.b else None
        tick = self.report.ticker(_key(store, u)) if isinstance(self.report, Progress) and \
            type(self.ex) is _Inline else None         # in this process: a live line
        return self.ex.submit(run_unit, self.exp_dict, u, sp, blocks, lam_cv, lam0, tick)

    def fill(self, max_records):
        """Submit ready units, in order, up to the executor's capacity (and ``max_records``)."""
        limit = self.ex.capacity if max_records is None else \
            min(self.ex.capacity, max_records - self.n_new)
        for u in self.units:
            if len(self.running) >= limit:
                break
            if u not in self.running.values() and self.ready(u):
                self.running[self.submit(u)] = u

    def save(self, f):
        """Record the result of the finished future ``f`` and report it."""
        u = self.running.pop(f)
        try:
            result = f.result()
        except Exception as exc:
            raise RuntimeError(f"{_key(self.store, u)} failed: {type(exc).__name__}: {exc}") \
                from exc
        rec, arrays = (result, None) if u.b is None else result
        rec["fingerprint"] = self.fingerprint      # whose record this is
        self.store.save(_key(self.store, u), rec, arrays)
        self.done.add(u)
        self.n_done += 1
        self.n_new += 1
        if self.report:
            self.report(self.n_done, len(self.units), _key(self.store, u), rec)

    def drive(self, max_records=None):
        """Run until no unit is ready (or ``max_records`` new records); whatever happens,
        cancel what is in flight, close the executor and summarise what is done."""
        try:
            while True:
                self.fill(max_records)
                if not self.running:
                    break
                for f in self.ex.wait(list(self.running)):
                    self.save(f)
        finally:
            for f in self.running:
                f.cancel()
            self.ex.close()
            if self.n_new:
                summarize(self.exp, self.store)    # what is done so far, also when interrupted
