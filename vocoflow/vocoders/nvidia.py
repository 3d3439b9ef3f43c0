"""Import NVIDIA's published WaveGlow checkpoints into vocoflow vocoder directories.

NVIDIA's ``train.py`` saves ``{'model': <pickled WaveGlow module>, 'iteration': ...,
'optimizer': ..., 'learning_rate': ...}`` (e.g. ``waveglow_256channels_universal_v5.pt``), in
torch's legacy format (older files) or its zip format. :func:`read_nvidia_checkpoint` reads
such a file, or a plain state dict of the same layout, **without NVIDIA's code and without
running code from the file**: the pickle is read by a restricted unpickler (passed to
``torch.load`` as its ``pickle_module``) that resolves only torch's tensor/storage rebuild
functions, dtypes, ``OrderedDict`` and ``set``; every other class named in the file
(``glow.WaveGlow``, ``torch.nn.Conv1d``, ...) becomes an inert :class:`PickledObject` that only
records the state it was given, and any attempt to call one of them (how a malicious pickle runs
``os.system``) is refused.

:func:`import_waveglow` maps the weights onto a :class:`~vocoflow.vocoders.WaveGlow` that
computes NVIDIA's ``WaveGlow.infer`` exactly:

* the upsampler is the same transposed convolution, cropped like ``infer`` (``upsample_crop:
  start``: the last ``kernel - hop`` samples are dropped);
* couplings use ``exp`` scales (no clamp) and NVIDIA's output order (shift first, then
  ``log s``: the rows of each ``WN.end`` are swapped to vocoflow's ``(log s, shift)``);
* weight norm is kept (``g``/``v`` become the parametrisation's ``original0``/``original1``)
  or folded (``fold_weight_norm=True``); older layouts (per-layer ``cond_layers``, separate
  ``res_layers``/``skip_layers``) are concatenated into the fused layers (exact, since weight
  norm is per output channel), and ``glow_old.WaveGlow`` models alternate the coupling halves;
* the features are Tacotron 2's mel front end (the ``tacotron2`` preset: centred frames,
  natural log of the magnitude mel clamped at ``1e-5``), with no feature normalisation.
"""

from __future__ import annotations

import collections
import os
import pickle
import re
import types
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from vocoflow.audio import MelConfig, get_preset
from vocoflow.flows import AffineCoupling, Invertible1x1Conv

from .checkpoint import VocoderError, save_vocoder
from .config import load_model_config
from .waveglow import WaveGlow, WaveGlowConfig

__all__ = ["NvidiaCheckpointError", "PickledObject", "NvidiaCheckpoint", "restricted_pickle",
           "read_nvidia_checkpoint", "waveglow_from_nvidia", "import_waveglow", "tacotron2_features"]

#: what an imported vocoder directory's ``train:`` section says (NVIDIA's training settings)
NVIDIA_TRAIN = {"batch_size": 12, "segment_length": 16384, "lr": 1.0e-4, "sigma": 1.0}
#: NVIDIA's hop (``stride=256`` is hard-coded in ``glow.py``); used when the file does not say
NVIDIA_HOP = 256


class NvidiaCheckpointError(VocoderError):
    """A file that is not a readable NVIDIA WaveGlow checkpoint (the message names the file)."""


# ------------------------------------------------------------------------ restricted unpickling
class RefusedCall(pickle.UnpicklingError):
    """The pickle asked to call something other than a tensor/storage rebuild function."""


class _RecordMeta(type):
    def __call__(cls, *args, **kwargs):
        raise RefusedCall(f"the pickle calls {cls.pickled_class}, which is not allowed "
                          f"(only tensors and module state are read)")


class PickledObject(metaclass=_RecordMeta):
    """An inert stand-in for an instance of a class named in a pickle: its ``state`` is what
    the pickle's BUILD gave it (for a ``torch.nn.Module``, its ``__dict__``); it has no
    behaviour. ``pickled_class`` is ``"module.Name"`` as written in the file."""

    pickled_class = "?"

    def __setstate__(self, state):
        object.__setattr__(self, "state", state)

    def __getattr__(self, name):  # only for 'state' before BUILD
        if name == "state":
            return {}
        raise AttributeError(name)

    @property
    def attrs(self) -> dict:
        st = self.state
        if isinstance(st, tuple) and len(st) == 2:  # (state, slotstate)
            st = {**(st[0] or {}), **(st[1] or {})}
        return st if isinstance(st, dict) else {}

    def __repr__(self):
        return f"<pickled {self.pickled_class}>"


_record_classes: dict[str, type] = {}


def _record_class(module: str, name: str) -> type:
    key = f"{module}.{name}"
    cls = _record_classes.get(key)
    if cls is None:
        safe = re.sub(r"\W", "_", name) or "_"
        cls = _RecordMeta(safe, (PickledObject,), {"pickled_class": key, "__module__": __name__})
        _record_classes[key] = cls
    return cls


def _safe_reconstructor(cls, base, state):
    """``copyreg._reconstructor`` for protocol 0/1 pickles: only for inert records."""
    if not (isinstance(cls, type) and issubclass(cls, PickledObject)) or base is not object or state is not None:
        raise RefusedCall(f"the pickle reconstructs {cls!r} from {base!r}, which is not allowed")
    return object.__new__(cls)


def _allowed_functions() -> dict:
    rebuild = ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_parameter",
               "_rebuild_parameter_with_state")
    out = {("torch._utils", n): getattr(torch._utils, n) for n in rebuild if hasattr(torch._utils, n)}
    out.update({
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("__builtin__", "set"): set,
        ("torch", "Size"): torch.Size,
        ("torch", "device"): torch.device,
        ("copyreg", "_reconstructor"): _safe_reconstructor,
        ("copy_reg", "_reconstructor"): _safe_reconstructor,
    })
    return out


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only tensor/storage rebuilding (see the module doc)."""

    _functions = _allowed_functions()

    def find_class(self, module, name):
        fn = self._functions.get((module, name))
        if fn is not None:
            return fn
        if module == "torch":
            obj = getattr(torch, name, None)
            if isinstance(obj, torch.dtype):
                return obj
            if name.endswith("Storage") and isinstance(obj, type) and hasattr(obj, "_new_shared"):
                return obj
        return _record_class(module, name)


def _restricted_load(file, **kwargs):
    return RestrictedUnpickler(file, **kwargs).load()


#: the module-like object given to ``torch.load`` as ``pickle_module``
restricted_pickle = types.ModuleType("vocoflow_restricted_pickle")
restricted_pickle.Unpickler = RestrictedUnpickler
restricted_pickle.load = _restricted_load
restricted_pickle.UnpicklingError = pickle.UnpicklingError


# ------------------------------------------------------------------------------- reading a file
@dataclass
class NvidiaCheckpoint:
    """What :func:`read_nvidia_checkpoint` found in a file."""

    path: Path
    state: dict                     # flat NVIDIA state dict (``WN.0.start.weight_g``, ...)
    source: str                     # pickled class ("glow.WaveGlow") or "state_dict"
    attrs: dict = field(default_factory=dict)  # n_flows, n_group, ..., upsample_stride from the module
    info: dict = field(default_factory=dict)   # iteration, learning_rate


def _module_tensors(rec: PickledObject, prefix: str, out: dict, depth: int = 0) -> None:
    if depth > 64:
        raise ValueError("module tree nested too deeply")
    st = rec.attrs
    for group in ("_parameters", "_buffers"):
        for name, t in (st.get(group) or {}).items():
            if isinstance(t, torch.Tensor):
                out[prefix + str(name)] = t
    for name, sub in (st.get("_modules") or {}).items():
        if isinstance(sub, PickledObject):
            _module_tensors(sub, f"{prefix}{name}.", out, depth + 1)


def _strip(sd: dict) -> dict:
    out = {}
    for k, v in sd.items():
        k = str(k)
        while k.startswith("module."):
            k = k[len("module."):]
        out[k] = v
    return out


def _is_state_dict(obj) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def read_nvidia_checkpoint(path) -> NvidiaCheckpoint:
    """Read an NVIDIA WaveGlow checkpoint (``train.py``'s dict with a pickled model, a bare
    pickled model, or a state dict, in torch's zip or legacy format) with the restricted
    unpickler. :class:`NvidiaCheckpointError` names the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise NvidiaCheckpointError(f"{path}: no such checkpoint file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # legacy files: "source code of class ... not checked"
            obj = torch.load(path, map_location="cpu", pickle_module=restricted_pickle, weights_only=False)
    except RefusedCall as e:
        raise NvidiaCheckpointError(f"{path}: refusing to load: {e}") from None
    except Exception as e:  # EOFError, UnpicklingError, zip and tar errors, RuntimeError, ...
        msg = str(e).splitlines()[0] if str(e) else ""
        raise NvidiaCheckpointError(f"{path}: unreadable or truncated checkpoint "
                                    f"({type(e).__name__}{': ' + msg if msg else ''})") from None
    info, attrs = {}, {}
    model = obj
    if isinstance(obj, dict) and not _is_state_dict(obj):
        for key in ("iteration", "learning_rate"):
            if isinstance(obj.get(key), (int, float)) and not isinstance(obj.get(key), bool):
                info[key] = obj[key]
        if "model" in obj:
            model = obj["model"]
        elif "state_dict" in obj:
            model = obj["state_dict"]
        else:
            keys = ", ".join(sorted(map(str, obj))[:6])
            raise NvidiaCheckpointError(f"{path}: not a WaveGlow checkpoint (a dict with keys "
                                        f"{keys}; expected 'model' or a state dict)")
    if isinstance(model, PickledObject):
        source = model.pickled_class
        if source.rsplit(".", 1)[-1] != "WaveGlow":
            raise NvidiaCheckpointError(f"{path}: not a WaveGlow checkpoint (the model is a "
                                        f"pickled {source})")
        sd: dict = {}
        try:
            _module_tensors(model, "", sd)
        except ValueError as e:
            raise NvidiaCheckpointError(f"{path}: {e}") from None
        st = model.attrs
        for key in ("n_flows", "n_group", "n_early_every", "n_early_size"):
            v = st.get(key)
            if isinstance(v, int) and not isinstance(v, bool):
                attrs[key] = v
        up = (st.get("_modules") or {}).get("upsample")
        if isinstance(up, PickledObject):
            stride = up.attrs.get("stride")
            if isinstance(stride, (tuple, list)) and len(stride) == 1 and isinstance(stride[0], int):
                attrs["upsample_stride"] = stride[0]
    elif _is_state_dict(model):
        source, sd = "state_dict", dict(model)
    else:
        raise NvidiaCheckpointError(f"{path}: not a WaveGlow checkpoint (found "
                                    f"{getattr(model, 'pickled_class', type(model).__name__)})")
    return NvidiaCheckpoint(path, _strip(sd), source, attrs, info)


# ------------------------------------------------------------------------------ layout mapping
def _conv(sd: dict, prefix: str, where: Path):
    """``(g, v, bias)`` for a weight-normed conv or ``(None, weight, bias)`` for a plain one."""
    bias = sd.get(prefix + ".bias")
    if prefix + ".weight_g" in sd and prefix + ".weight_v" in sd:
        g, v = sd[prefix + ".weight_g"], sd[prefix + ".weight_v"]
    elif prefix + ".weight" in sd:
        g, v = None, sd[prefix + ".weight"]
    else:
        raise NvidiaCheckpointError(f"{where}: not a WaveGlow checkpoint (no weights for {prefix})")
    if bias is None:
        raise NvidiaCheckpointError(f"{where}: not a WaveGlow checkpoint (no bias for {prefix})")
    return g, v, bias


def _fold(g, v):
    if g is None:
        return v
    return v * (g / v.norm(dim=tuple(range(1, v.dim())), keepdim=True))


def _cat(parts):
    """Concatenate convs along output channels (weight norm is per output channel)."""
    if all(p[0] is not None for p in parts):
        return (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]),
                torch.cat([p[2] for p in parts]))
    return None, torch.cat([_fold(p[0], p[1]) for p in parts]), torch.cat([p[2] for p in parts])


def _count(sd: dict, pattern: str) -> int:
    n = 0
    while any(k.startswith(pattern.format(n) + ".") for k in sd):
        n += 1
    return n


def _nvidia_layout(ck: NvidiaCheckpoint):
    """The architecture (a :class:`WaveGlowConfig`) and per-flow convs of an NVIDIA state dict."""
    sd, where = ck.state, ck.path
    if "upsample.weight" not in sd or "upsample.bias" not in sd or _count(sd, "WN.{}") == 0:
        some = ", ".join(sorted(sd)[:4])
        raise NvidiaCheckpointError(f"{where}: not a WaveGlow checkpoint (no upsample/WN weights; "
                                    f"keys: {some}{', ...' if len(sd) > 4 else ''})")
    up = sd["upsample.weight"]
    if up.dim() != 3 or up.shape[0] != up.shape[1]:
        raise NvidiaCheckpointError(f"{where}: upsample.weight has shape {tuple(up.shape)}, "
                                    f"expected (n_mels, n_mels, kernel)")
    n_mels, kernel = int(up.shape[0]), int(up.shape[2])
    n_flows = _count(sd, "WN.{}")
    if _count(sd, "convinv.{}") != n_flows:
        raise NvidiaCheckpointError(f"{where}: {n_flows} WN blocks but {_count(sd, 'convinv.{}')} "
                                    f"invertible convolutions")
    flows = []
    for k in range(n_flows):
        p = f"WN.{k}"
        w = sd.get(f"convinv.{k}.conv.weight")
        if w is None or w.dim() != 3 or w.shape[0] != w.shape[1] or w.shape[2] != 1:
            raise NvidiaCheckpointError(f"{where}: convinv.{k}.conv.weight missing or not (c, c, 1)")
        n_layers = _count(sd, p + ".in_layers.{}")
        if n_layers == 0:
            raise NvidiaCheckpointError(f"{where}: not a WaveGlow checkpoint (no {p}.in_layers)")
        f = {"convinv": w[:, :, 0], "start": _conv(sd, p + ".start", where),
             "in": [_conv(sd, f"{p}.in_layers.{i}", where) for i in range(n_layers)],
             "end": _conv(sd, p + ".end", where)}
        if any(k2.startswith(p + ".cond_layer.") for k2 in sd):
            f["cond"] = _conv(sd, p + ".cond_layer", where)
        else:  # before NVIDIA fused them (2019): one conditioning conv per layer
            f["cond"] = _cat([_conv(sd, f"{p}.cond_layers.{i}", where) for i in range(n_layers)])
        if any(k2.startswith(p + ".res_skip_layers.") for k2 in sd):
            f["res_skip"] = [_conv(sd, f"{p}.res_skip_layers.{i}", where) for i in range(n_layers)]
        else:  # the first release: separate residual and skip convs
            f["res_skip"] = [_cat([_conv(sd, f"{p}.res_layers.{i}", where),
                                   _conv(sd, f"{p}.skip_layers.{i}", where)])
                             for i in range(n_layers - 1)]
            f["res_skip"].append(_conv(sd, f"{p}.skip_layers.{n_layers - 1}", where))
        flows.append(f)
    start_v = flows[0]["start"][1]
    in_v = flows[0]["in"][0][1]
    cond_v = flows[0]["cond"][1]
    n_channels, kernel_size, n_layers = int(start_v.shape[0]), int(in_v.shape[2]), len(flows[0]["in"])
    if cond_v.shape[1] % n_mels:
        raise NvidiaCheckpointError(f"{where}: conditioning takes {cond_v.shape[1]} channels, not a "
                                    f"multiple of n_mels={n_mels}")
    n_group = cond_v.shape[1] // n_mels
    chans = [int(f["convinv"].shape[0]) for f in flows]
    attrs = ck.attrs
    changes = [k for k in range(1, n_flows) if chans[k] != chans[k - 1]]
    if changes:
        n_early_every, n_early_size = changes[0], chans[0] - chans[changes[0]]
    else:
        n_early_every = attrs.get("n_early_every", n_flows)
        n_early_size = attrs.get("n_early_size", 2)
    for key, have in (("n_flows", n_flows), ("n_group", n_group), ("n_early_every", n_early_every),
                      ("n_early_size", n_early_size)):
        if key in attrs and attrs[key] != have and (changes or key in ("n_flows", "n_group")):
            raise NvidiaCheckpointError(f"{where}: the model says {key}={attrs[key]} but its weights "
                                        f"have {key}={have}")
    hop = attrs.get("upsample_stride", NVIDIA_HOP)
    try:
        cfg = WaveGlowConfig(
            n_mels=n_mels, hop_length=hop, n_group=n_group, n_flows=n_flows,
            n_early_every=n_early_every, n_early_size=n_early_size, wn_layers=n_layers,
            wn_channels=n_channels, wn_kernel_size=kernel_size, lu=False, coupling="affine",
            affine_scale="exp", upsample="transpose", upsample_kernel=kernel, upsample_crop="start",
            alternate_halves=ck.source.split(".")[0] == "glow_old")
    except ValueError as e:
        raise NvidiaCheckpointError(f"{where}: unsupported WaveGlow layout ({e})") from None
    if cfg.flow_channels() != chans:
        raise NvidiaCheckpointError(f"{where}: unsupported WaveGlow layout (flow channels {chans})")
    return cfg, flows


def _assign(conv: torch.nn.Conv1d, weights, where: Path, name: str, fold: bool) -> None:
    g, v, bias = weights
    try:
        if fold or g is None:
            w = conv.weight
            if w.shape != v.shape:
                raise RuntimeError(f"shape {tuple(v.shape)}, expected {tuple(w.shape)}")
            conv.weight.copy_(_fold(g, v))
        else:
            p = conv.parametrizations.weight
            for dst, src in ((p.original0, g), (p.original1, v)):
                if dst.shape != src.shape:
                    raise RuntimeError(f"shape {tuple(src.shape)}, expected {tuple(dst.shape)}")
                dst.copy_(src)
        if conv.bias.shape != bias.shape:
            raise RuntimeError(f"bias shape {tuple(bias.shape)}, expected {tuple(conv.bias.shape)}")
        conv.bias.copy_(bias)
    except RuntimeError as e:
        raise NvidiaCheckpointError(f"{where}: {name} does not fit the WaveGlow its other weights "
                                    f"describe ({e})") from None


def waveglow_from_nvidia(ck: NvidiaCheckpoint, fold_weight_norm: bool = False) -> WaveGlow:
    """A :class:`WaveGlow` computing the same function as the NVIDIA model in ``ck``.

    Weight norm is kept unless ``fold_weight_norm`` or a conv of the file has none (a model
    saved after NVIDIA's ``remove_weightnorm``); then every conv gets plain folded weights."""
    cfg, flows = _nvidia_layout(ck)
    where = ck.path
    fold = fold_weight_norm or any(
        c[0] is None for f in flows for c in [f["start"], f["cond"], *f["in"], *f["res_skip"]])
    model = WaveGlow(cfg)
    if fold:
        model.remove_weight_norm()
    convs = [m for m in model.bijector.modules() if isinstance(m, Invertible1x1Conv)]
    couplings = [m for m in model.bijector.modules() if isinstance(m, AffineCoupling)]
    assert len(convs) == len(couplings) == cfg.n_flows
    with torch.no_grad():
        w, b = ck.state["upsample.weight"], ck.state["upsample.bias"]
        model.upsample.conv.weight.copy_(w)
        model.upsample.conv.bias.copy_(b)
        for k, f in enumerate(flows):
            if convs[k].weight.shape != f["convinv"].shape:
                raise NvidiaCheckpointError(f"{where}: convinv.{k} has shape {tuple(f['convinv'].shape)}")
            convs[k].weight.copy_(f["convinv"])
            net = couplings[k].net
            _assign(net.start, f["start"], where, f"WN.{k}.start", fold)
            for i, conv in enumerate(net.in_layers):
                _assign(conv, f["in"][i], where, f"WN.{k}.in_layers.{i}", fold)
            for i, conv in enumerate(net.res_skip_layers):
                _assign(conv, f["res_skip"][i], where, f"WN.{k}.res_skip_layers.{i}", fold)
            _assign(net.cond_layer, f["cond"], where, f"WN.{k}.cond_layer", fold)
            # NVIDIA's WN output is (shift, log s); vocoflow's affine map takes (log s, shift)
            _, ew, eb = f["end"]
            h = ew.shape[0] // 2
            if ew.shape[0] != 2 * h:
                raise NvidiaCheckpointError(f"{where}: WN.{k}.end has an odd number of outputs")
            _assign(net.end, (None, torch.cat([ew[h:], ew[:h]]), torch.cat([eb[h:], eb[:h]])),
                    where, f"WN.{k}.end", True)
    return model


# ------------------------------------------------------------------------------------ importing
def tacotron2_features() -> MelConfig:
    """Tacotron 2's mel front end (``TacotronSTFT.mel_spectrogram``): the ``tacotron2`` preset."""
    try:
        return get_preset("tacotron2")
    except ValueError:  # a vocoflow without the preset: the same fields spelled out
        return MelConfig(sample_rate=22050, n_fft=1024, hop_length=256, win_length=1024, n_mels=80,
                         fmin=0.0, fmax=8000.0, mel_scale="slaney", norm="slaney", power=1.0,
                         log="ln", clamp=1e-5, pad_mode="reflect", center=True)


_ARCH_FIELDS = ("n_mels", "hop_length", "n_group", "n_flows", "n_early_every", "n_early_size",
                "wn_layers", "wn_channels", "wn_kernel_size")


def _check_config(cfg: WaveGlowConfig, config, config_name: str, where: Path) -> dict:
    try:
        user = load_model_config(config)
    except (OSError, ValueError) as e:
        msg = str(e)
        raise NvidiaCheckpointError(msg if msg.startswith(config_name) else f"{config_name}: {msg}") from None
    if user["model"].get("type", "waveglow") != "waveglow":
        raise NvidiaCheckpointError(f"{config_name}: model type {user['model']['type']!r} does not "
                                    f"match {where} (a WaveGlow)")
    mine = cfg.to_dict()
    theirs = WaveGlowConfig.from_dict(user["model"], features=user["features"]).to_dict()
    fields = list(_ARCH_FIELDS)
    if not cfg.level_channels()[1:]:
        fields = [f for f in fields if f not in ("n_early_every", "n_early_size")]
    bad = [f"{f}={theirs[f]} (checkpoint: {mine[f]})" for f in fields if theirs[f] != mine[f]]
    if theirs.get("coupling") != "affine" or theirs.get("lu"):
        bad.append(f"coupling={theirs.get('coupling')}, lu={theirs.get('lu')} (checkpoint: affine, lu=False)")
    if bad:
        raise NvidiaCheckpointError(f"{config_name}: model does not match {where}: {'; '.join(bad)}")
    return user


def import_waveglow(checkpoint, out_dir, config=None, fold_weight_norm: bool = False,
                    sigma: float | None = None, denoise: float | None = None) -> Path:
    """Turn an NVIDIA WaveGlow checkpoint into a vocoflow vocoder directory ``out_dir``.

    ``config`` (optional, a model config YAML path or dict such as ``configs/waveglow_nvidia.yaml``)
    is checked against the checkpoint's architecture (a mismatch is an error naming both) and
    gives the saved ``train:`` and ``synthesis:`` sections; ``sigma``/``denoise`` override the
    synthesis defaults. The features are always Tacotron 2's front end
    (:func:`tacotron2_features`), without normalisation. Returns the directory.
    """
    ck = read_nvidia_checkpoint(checkpoint)
    model = waveglow_from_nvidia(ck, fold_weight_norm=fold_weight_norm)
    features = tacotron2_features()
    if features.n_mels != model.config.n_mels:
        features = features.replace(n_mels=model.config.n_mels)
    if features.hop_length != model.config.hop_length:
        raise NvidiaCheckpointError(f"{ck.path}: hop {model.config.hop_length} does not match "
                                    f"Tacotron 2's front end (hop {features.hop_length})")
    train, synthesis = dict(NVIDIA_TRAIN), {"sigma": 0.6, "denoise": 0.0}
    if config is not None:
        name = os.fspath(config) if isinstance(config, (str, os.PathLike)) else "<config>"
        user = _check_config(model.config, config, name, ck.path)
        train, synthesis = user["train"] or train, user["synthesis"]
    if sigma is not None:
        synthesis["sigma"] = float(sigma)
    if denoise is not None:
        synthesis["denoise"] = float(denoise)
    doc = {"features": features.to_dict(), "model": {"type": "waveglow", **model.config.to_dict()},
           "train": train, "synthesis": synthesis}
    info = {"imported_from": str(ck.path), "source": ck.source,
            "weight_norm": "kept" if model.has_weight_norm() else "folded", **ck.info}
    return save_vocoder(model, doc, out_dir, normalize=False, info=info)

