"""The hostile corpus: checkpoints, folders and config files built at test time (nothing binary is committed).

Each case is a :class:`Case`: a builder that writes the input under a folder and returns the command-line arguments
that audit it, the fragment its one error line must hold (the real reason), and, for payloads, the pickle bytes
whose unpickling creates the canary file (so a control test can prove the payload is real).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import pickletools
import struct
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

#: The legacy torch.save magic number (the first pickle of a non-zip torch file).
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
#: Text planted in files that error messages must never echo.
SECRET = "SECRET-KEY-MATERIAL-0123456789"


@dataclass
class Case:
    """One hostile input: ``build(folder, canary) -> (paths, extra args)``, and the reason its error names."""

    name: str
    family: str
    build: Callable[[Path, Path], tuple[list[Path], list[str]]]
    reason: str
    payload: Callable[[Path], bytes] | None = None


# --- pickle payloads: each creates the canary file when unpickled ---------------------------------------------------


def _code(canary: Path) -> str:
    return f"open({str(canary)!r}, 'w').write('pwned')"


def _str(text: str) -> bytes:
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data  # BINUNICODE


def reduce_exec(canary: Path) -> bytes:
    return b"\x80\x02cbuiltins\nexec\n" + _str(_code(canary)) + b"\x85R."


def reduce_eval(canary: Path) -> bytes:
    return b"\x80\x02cbuiltins\neval\n" + _str(_code(canary)) + b"\x85R."


def os_system(canary: Path) -> bytes:
    return b"\x80\x02cos\nsystem\n" + _str(f"touch {canary}") + b"\x85R."


def subprocess_call(canary: Path) -> bytes:
    return b"\x80\x02csubprocess\ncall\n" + _str("touch") + _str(str(canary)) + b"\x86\x85R."


def numpy_runstring(canary: Path) -> bytes:
    return b"\x80\x02cnumpy.testing._private.utils\nrunstring\n" + _str(_code(canary)) + b"}\x86R."


def partial_exec(canary: Path) -> bytes:
    # functools.partial(exec, code)(): the callable hidden one level down
    return b"\x80\x02cfunctools\npartial\ncbuiltins\nexec\n" + _str(_code(canary)) + b"\x86R)R."


def getattr_exec(canary: Path) -> bytes:
    # getattr(builtins-module-through-__import__, "exec")(code)
    return (
        b"\x80\x02cbuiltins\ngetattr\ncbuiltins\n__import__\n"
        + _str("builtins")
        + b"\x85R"
        + _str("exec")
        + b"\x86R"
        + _str(_code(canary))
        + b"\x85R."
    )


def inst_system(canary: Path) -> bytes:
    # protocol 0 INST: import and call in one opcode
    return b"(S'touch " + str(canary).encode() + b"'\nios\nsystem\n."


def obj_exec(canary: Path) -> bytes:
    # OBJ: the class (here a function) is on the stack under the mark
    return b"\x80\x02(cbuiltins\nexec\n" + _str(_code(canary)) + b"o."


def memo_stack_global(canary: Path) -> bytes:
    # protocol 4 STACK_GLOBAL with its strings taken back from the memo
    return b"\x80\x04\x8c\x08builtins\x94\x8c\x04exec\x94h\x00h\x01\x93" + _str(_code(canary)) + b"\x85R."


def computed_stack_global(canary: Path) -> bytes:
    # STACK_GLOBAL over names computed by _codecs.encode (in torch's allowlist): rot13("ohvygvaf") == "builtins"
    def rot13(word: str) -> bytes:
        return b"c_codecs\nencode\n" + _str(word) + _str("rot13") + b"\x86R"

    return b"\x80\x04" + rot13("ohvygvaf") + rot13("rkrp") + b"\x93" + _str(_code(canary)) + b"\x85R."


def half_computed_stack_global(canary: Path) -> bytes:
    # module literal, name computed: the old scanner called this "collections.None"
    return (
        b"\x80\x04\x8c\x0bcollections" + b"c_codecs\nencode\n" + _str("BeqrerqQvpg") + _str("rot13") + b"\x86R\x93)R."
    )


def ext_opcode(canary: Path) -> bytes:
    return b"\x80\x02\x82\x01" + _str(_code(canary)) + b"\x85R."


def unknown_opcode(canary: Path) -> bytes:
    return b"\x80\x02\xff" + reduce_exec(canary)[2:]


def inst_ordered_dict(canary: Path) -> bytes:
    # INST of a class torch allows: the scanner passes it, torch's unpickler refuses the opcode
    return b"(icollections\nOrderedDict\n."


def text_persid(canary: Path) -> bytes:
    return b"\x80\x02Pfoo\n."


def bytearray_bomb(canary: Path) -> bytes:
    # builtins.bytearray is in torch's allowlist: bytearray(3 * 10**9) would allocate 3 GB (no canary: memory)
    return b"\x80\x02cbuiltins\nbytearray\n\x8a\x05\x00^\xd0\xb2\x00\x85R."


# --- writing checkpoints ---------------------------------------------------------------------------------------------


def gru_state(hidden: int = 4) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return nn.GRU(3, hidden, batch_first=True).state_dict()


def good_checkpoint(path: Path) -> Path:
    torch.save(gru_state(), path)
    return path


def rezip(path: Path, replace: dict[str, bytes], *, extra: list[tuple[str, bytes]] = (), first: bool = False) -> Path:
    """Rewrite a torch zip with some entries' bytes replaced and ``extra`` entries added (first or last)."""
    with zipfile.ZipFile(path) as archive:
        entries = [(n, archive.read(n)) for n in archive.namelist()]
    prefix = entries[0][0].split("/", 1)[0]
    entries = [(n, replace.get(n.split("/", 1)[1], data)) for n, data in entries]
    added = [(f"{prefix}/{n}", data) for n, data in extra]
    entries = added + entries if first else entries + added
    path.unlink()
    with warnings.catch_warnings(), zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        warnings.simplefilter("ignore")  # a duplicate name is the point of one case
        for name, data in entries:
            archive.writestr(name, data)
    return path


def zip_with_pickle(folder: Path, name: str, payload: bytes) -> Path:
    return rezip(good_checkpoint(folder / f"{name}.pt"), {"data.pkl": payload})


def _pickle_end(data: bytes, start: int) -> int:
    stream = io.BytesIO(data)
    stream.seek(start)
    for opcode, _, _ in pickletools.genops(stream):
        if opcode.name == "STOP":
            break
    return stream.tell()


def legacy_with(folder: Path, name: str, *, header: int | None = None, payload: bytes) -> Path:
    """A legacy torch file with ``payload`` as header pickle ``header`` (1: protocol, 2: system info) or keys (4)."""
    full = folder / f"{name}.src"
    torch.save(gru_state(), full, _use_new_zipfile_serialization=False)
    data = full.read_bytes()
    full.unlink()
    pieces, offset = [], 0
    for _ in range(5):
        end = _pickle_end(data, offset)
        pieces.append(data[offset:end])
        offset = end
    rest = data[offset:]
    pieces[header] = payload
    path = folder / f"{name}.pt"
    path.write_bytes(b"".join(pieces) + rest)
    return path


def _payload_zip(fn: Callable[[Path], bytes]) -> Callable[[Path, Path], tuple[list[Path], list[str]]]:
    def build(folder: Path, canary: Path) -> tuple[list[Path], list[str]]:
        return [zip_with_pickle(folder, fn.__name__, fn(canary))], []

    return build


def _plain_pickle(folder: Path, canary: Path) -> tuple[list[Path], list[str]]:
    path = folder / "plain.pkl"
    path.write_bytes(reduce_exec(canary))
    return [path], []


def _lightning(folder: Path, canary: Path) -> tuple[list[Path], list[str]]:
    # A clean state_dict under "state_dict", the payload among the hyper-parameters
    good = good_checkpoint(folder / "light.src")
    with zipfile.ZipFile(good) as archive:
        inner = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    good.unlink()
    # {"state_dict": <the good dict>, "hyper_parameters": <payload result>}
    body = inner[2:-1]  # drop PROTO and STOP
    payload = reduce_exec(canary)[2:-1]
    data = b"\x80\x02}(" + _str("state_dict") + body + _str("hyper_parameters") + payload + b"u."
    return [zip_with_pickle(folder, "lightning", data)], []


def _duplicate_entry(folder: Path, canary: Path) -> tuple[list[Path], list[str]]:
    # torch reads the first data.pkl, zipfile the last: the old scanner read the clean one
    path = good_checkpoint(folder / "dup.pt")
    return [rezip(path, {}, extra=[("data.pkl", reduce_exec(canary))], first=True)], []


def _two_data_pkl(folder: Path, canary: Path) -> tuple[list[Path], list[str]]:
    path = good_checkpoint(folder / "two.pt")
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("other/data.pkl", reduce_exec(canary))
    return [path], []


def _legacy(header: int) -> Callable[[Path, Path], tuple[list[Path], list[str]]]:
    def build(folder: Path, canary: Path) -> tuple[list[Path], list[str]]:
        return [legacy_with(folder, f"legacy_h{header}", header=header, payload=reduce_exec(canary))], []

    return build


def _allow(flag_value: str, fn: Callable[[Path], bytes]) -> Callable[[Path, Path], tuple[list[Path], list[str]]]:
    # The user copies a flag the old refusal suggested
    def build(folder: Path, canary: Path) -> tuple[list[Path], list[str]]:
        return [zip_with_pickle(folder, f"allow_{fn.__name__}", fn(canary))], ["--allow-global", flag_value]

    return build


def _pyproject(body: str, *, safetensors: bool = False) -> Callable[[Path, Path], tuple[list[Path], list[str]]]:
    def build(folder: Path, canary: Path) -> tuple[list[Path], list[str]]:
        (folder / "pyproject.toml").write_text(f"[tool.gradhealth]\n{body.format(canary=canary)}\n")
        if safetensors:
            from safetensors.torch import save_file

            path = folder / "weights.safetensors"
            save_file(gru_state(), str(path))
        else:
            path = zip_with_pickle(folder, "with_pyproject", reduce_exec(canary))
        return [path], []

    return build


# --- memory bombs --------------------------------------------------------------------------------------------------


def _views(hidden: int, name: str) -> Callable[[Path, Path], tuple[list[Path], list[str]]]:
    def build(folder: Path, canary: Path) -> tuple[list[Path], list[str]]:
        one = torch.zeros(1)
        state = {
            "weight_ih_l0": one.expand(3 * hidden, 3),
            "weight_hh_l0": one.expand(3 * hidden, hidden),
            "bias_ih_l0": one.expand(3 * hidden),
            "bias_hh_l0": one.expand(3 * hidden),
        }
        path = folder / f"{name}.pt"
        torch.save(state, path)
        return [path], []

    return build


def _meta(folder: Path, canary: Path) -> tuple[list[Path], list[str]]:
    path = folder / "meta.pt"
    torch.save(nn.GRU(3, 50_000, device="meta").state_dict(), path)
    return [path], []


def _huge_layer_index(folder: Path, canary: Path) -> tuple[list[Path], list[str]]:
    state = gru_state()
    state["weight_hh_l1000000000"] = state["weight_hh_l0"]
    path = folder / "layer_index.pt"
    torch.save(state, path)
    return [path], []


def _zip_bomb(folder: Path, canary: Path) -> tuple[list[Path], list[str]]:
    # A real deflate bomb: 256 MiB of zeros in about 250 KB; the limit is lowered so the test stays small
    path = good_checkpoint(folder / "bomb.pt")
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as archive:
        prefix = archive.namelist()[0].split("/", 1)[0]
        with archive.open(f"{prefix}/data/99", "w", force_zip64=True) as entry:
            block = bytes(2**20)
            for _ in range(256):
                entry.write(block)
    return [path], ["--memory-limit", "64MiB"]


def sparse_safetensors(path: Path, rows: int = 100_000, cols: int = 100_000) -> Path:
    """A safetensors file declaring a float32 [rows, cols] tensor (40 GB), written sparse: almost no disk."""
    nbytes = rows * cols * 4
    header = json.dumps({"embedding.weight": {"dtype": "F32", "shape": [rows, cols], "data_offsets": [0, nbytes]}})
    raw = header.encode()
    raw += b" " * (-len(raw) % 8)
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        f.truncate(8 + len(raw) + nbytes)
    return path


def _sparse(folder: Path, canary: Path) -> tuple[list[Path], list[str]]:
    return [sparse_safetensors(folder / "sparse.safetensors")], []


def _good_with(*args: str) -> Callable[[Path, Path], tuple[list[Path], list[str]]]:
    def build(folder: Path, canary: Path) -> tuple[list[Path], list[str]]:
        return [good_checkpoint(folder / "good.pt")], list(args)

    return build


# --- Hugging Face folders and files that are not files -------------------------------------------------------------


def hf_folder(folder: Path, weight_map: dict[str, object] | None = None) -> Path:
    from safetensors.torch import save_file

    model = folder / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "gru"}')
    if weight_map is None:
        save_file(gru_state(), str(model / "model.safetensors"))
    else:
        (model / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return model


def _outside(folder: Path) -> Path:
    from safetensors.torch import save_file

    path = folder / "outside.safetensors"
    save_file(gru_state(), str(path))
    return path


def _hf_index(name_of: Callable[[Path], object]) -> Callable[[Path, Path], tuple[list[Path], list[str]]]:
    def build(folder: Path, canary: Path) -> tuple[list[Path], list[str]]:
        return [hf_folder(folder, {"weight_hh_l0": name_of(folder)})], []

    return build


def _hf_symlink(folder: Path, canary: Path) -> tuple[list[Path], list[str]]:
    secret = folder / "id_rsa"
    secret.write_text(SECRET)
    model = hf_folder(folder, {"w": "model.safetensors"})
    (model / "model.safetensors").symlink_to(secret)
    return [model], []


def _hf_symlink_config(folder: Path, canary: Path) -> tuple[list[Path], list[str]]:
    secret = folder / "id_rsa"
    secret.write_text(SECRET)
    model = hf_folder(folder)
    (model / "config.json").unlink()
    (model / "config.json").symlink_to(secret)
    return [model], []


def _hf_fifo(folder: Path, canary: Path) -> tuple[list[Path], list[str]]:
    model = hf_folder(folder, {"w": "shard.safetensors"})
    os.mkfifo(model / "shard.safetensors")
    return [model], []


def _fifo(folder: Path, canary: Path) -> tuple[list[Path], list[str]]:
    path = folder / "pipe.pt"
    os.mkfifo(path)
    return [path], []


def _hf_bin_payload(folder: Path, canary: Path) -> tuple[list[Path], list[str]]:
    model = hf_folder(folder, None)
    (model / "model.safetensors").unlink()
    zip_with_pickle(model, "pytorch_model", reduce_exec(canary)).rename(model / "pytorch_model.bin")
    return [model], []


def _secret_file(folder: Path, canary: Path) -> tuple[list[Path], list[str]]:
    path = folder / "key.pt"
    path.write_text(SECRET)
    return [path], []


def _secret_pickle(folder: Path, canary: Path) -> tuple[list[Path], list[str]]:
    # A pickle-looking file whose load fails on file content: the error must not quote it
    path = folder / "bad.pt"
    path.write_bytes(pickle.dumps(LEGACY_MAGIC, protocol=2) + b"\x80\x02" + SECRET.encode())
    return [path], []


_CODE = "callables that run code"
_REFUSED = "refused: unsafe"

#: Every hostile input. Families: payload (pickle code execution), archive, legacy, allow (copying a suggested
#: flag), config (a pyproject.toml above the working folder), memory, folder (Hugging Face folders), file.
CASES: list[Case] = [
    Case(
        "reduce_exec", "payload", _payload_zip(reduce_exec), f"{_CODE} or touch the system (builtins.exec)", reduce_exec
    ),
    Case("reduce_eval", "payload", _payload_zip(reduce_eval), "(builtins.eval)", reduce_eval),
    Case("os_system", "payload", _payload_zip(os_system), "(os.system)", os_system),
    Case("subprocess_call", "payload", _payload_zip(subprocess_call), "(subprocess.call)", subprocess_call),
    Case(
        "numpy_runstring",
        "payload",
        _payload_zip(numpy_runstring),
        "numpy.testing._private.utils.runstring",
        numpy_runstring,
    ),
    Case("partial_exec", "payload", _payload_zip(partial_exec), "builtins.exec, functools.partial", partial_exec),
    Case("getattr_exec", "payload", _payload_zip(getattr_exec), "builtins.__import__, builtins.getattr", getattr_exec),
    Case("inst_opcode", "payload", _payload_zip(inst_system), "(os.system)", inst_system),
    Case("obj_opcode", "payload", _payload_zip(obj_exec), "(builtins.exec)", obj_exec),
    Case("memo_stack_global", "payload", _payload_zip(memo_stack_global), "(builtins.exec)", memo_stack_global),
    Case(
        "computed_stack_global",
        "payload",
        _payload_zip(computed_stack_global),
        "a global with a computed name",
        computed_stack_global,
    ),
    Case("half_computed_global", "payload", _payload_zip(half_computed_stack_global), "a global with a computed name"),
    Case("ext_opcode", "payload", _payload_zip(ext_opcode), "a global from the extension registry"),
    Case("unknown_opcode", "payload", _payload_zip(unknown_opcode), "an unknown pickle opcode"),
    Case(
        "inst_allowed_class",
        "payload",
        _payload_zip(inst_ordered_dict),
        "refused: unsafe: torch's weights-only loader refused it (Unsupported operand 105 (INST opcode))",
    ),
    Case(
        "text_persistent_id",
        "payload",
        _payload_zip(text_persid),
        "refused: unsafe: torch's weights-only loader refused it (Unsupported operand 80 (PERSID opcode))",
    ),
    Case("plain_pickle", "payload", _plain_pickle, "is a pickle: loading it runs code", reduce_exec),
    Case("lightning_hparams", "payload", _lightning, "(builtins.exec)"),
    Case("duplicate_data_pkl", "archive", _duplicate_entry, "holds 1 entries twice"),
    Case("two_data_pkl", "archive", _two_data_pkl, "holds 2 data.pkl entries"),
    Case("legacy_protocol_pickle", "legacy", _legacy(1), "builtins.exec (header)"),
    Case("legacy_sys_info_pickle", "legacy", _legacy(2), "builtins.exec (header)"),
    Case("legacy_keys_pickle", "legacy", _legacy(4), "builtins.exec (header)"),
    Case("allow_exec", "allow", _allow("builtins.exec", reduce_exec), "invalid allow_global 'builtins.exec'"),
    Case("allow_system", "allow", _allow("os.system", os_system), "invalid allow_global 'os.system'"),
    Case(
        "allow_popen", "allow", _allow("subprocess.Popen", subprocess_call), "invalid allow_global 'subprocess.Popen'"
    ),
    Case(
        "allow_partial", "allow", _allow("functools.partial", partial_exec), "invalid allow_global 'functools.partial'"
    ),
    Case(
        "allow_runstring",
        "allow",
        _allow("numpy.testing._private.utils.runstring", numpy_runstring),
        "invalid allow_global 'numpy.testing._private.utils.runstring'",
    ),
    Case(
        "allow_bytearray",
        "allow",
        _allow("builtins.bytearray", bytearray_bomb),
        "invalid allow_global 'builtins.bytearray'",
    ),
    Case("config_trust_true", "config", _pyproject("trust = true"), "trust lets a file run code"),
    Case("config_trust_string", "config", _pyproject('trust = "false"'), "trust lets a file run code"),
    Case(
        "config_allow_global",
        "config",
        _pyproject('allow-global = ["builtins.exec"]'),
        "allow_global lets a file run code",
    ),
    Case(
        "config_model_factory",
        "config",
        _pyproject('model = "subprocess:call"\nmodel-kwargs = \'{{"args": ["touch", "{canary}"]}}\'', safetensors=True),
        "model lets a file run code",
    ),
    Case("bytearray_bomb", "memory", _payload_zip(bytearray_bomb), "(builtins.bytearray)"),
    Case(
        "stride0_hidden_50000",
        "memory",
        _views(50_000, "views_50000"),
        "its tensors (as rebuilt layers copy them) needs about 27.9 GiB",
    ),
    Case("stride0_hidden_8000", "memory", _views(8_000, "views_8000"), "auditing its recurrent layers needs about"),
    Case("meta_tensors", "memory", _meta, "tensors on the meta device"),
    Case("layer_index_1e9", "memory", _huge_layer_index, "layer index 1000000000 is not a plausible layer number"),
    Case("zip_bomb", "memory", _zip_bomb, "reading the file needs about 256.0 MiB, above the memory limit of 64.0 MiB"),
    Case("sparse_40gb_safetensors", "memory", _sparse, "reading the file needs about 37.3 GiB"),
    Case("seq_len_1e7", "memory", _good_with("--seq-len", str(10**7)), "auditing its recurrent layers needs about"),
    Case("batch_1e6", "memory", _good_with("--batch-size", str(10**6)), "auditing its recurrent layers needs about"),
    Case("hf_parent_path", "folder", _hf_index(lambda f: f"../{_outside(f).name}"), "outside the folder; refused"),
    Case("hf_absolute_path", "folder", _hf_index(lambda f: str(_outside(f))), "outside the folder; refused"),
    Case(
        "hf_index_dot",
        "folder",
        _hf_index(lambda f: "."),
        "resolves outside the folder (a symlink or the folder itself)",
    ),
    Case("hf_index_not_a_name", "folder", _hf_index(lambda f: 5), "is not a file name"),
    Case("hf_symlink_escape", "folder", _hf_symlink, "resolves outside the folder"),
    Case("hf_config_symlink", "folder", _hf_symlink_config, "resolves outside the folder"),
    Case("hf_fifo_shard", "folder", _hf_fifo, "is not a regular file"),
    Case("hf_bin_payload", "folder", _hf_bin_payload, "(builtins.exec)"),
    Case("fifo_input", "file", _fifo, "is not a regular file"),
    Case("secret_text_file", "file", _secret_file, "is not a checkpoint format gradhealth reads"),
    Case("secret_in_pickle", "file", _secret_pickle, "is truncated or corrupt"),
]

#: The cases whose peak memory is measured in a subprocess.
BOMBS = [c for c in CASES if c.family == "memory"]
