"""Property: whatever is broken in a command line or config (a wrong type, a value out of range, an
unknown key, a missing file), `nsr fit`, `nsr validate`, `nsr experiment` and `nsr inspect` end
with exit status 2 and one line `error: ...` that names the key or file, with no traceback, and
before any run folder is made."""
import pytest
import torch
import yaml
from conftest import config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

LIGHTNING_INFO = ("INFO:", "Seed set", "GPU available", "TPU available")
PROPERTY = settings(max_examples=30, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# (key, broken values, what the message must name)
REPLICATOR_KEYS = [
    ("model.init_args.population", ["0", "-3", "x", "1.5", "nan"], "population"),
    ("model.init_args.lr", ["nan", "inf", "-1", "abc"], "lr"),
    ("model.init_args.momentum", ["1.5", "-0.1", "fast"], "momentum"),
    ("model.init_args.epsilon", ["0", "-1e-4", "nan"], "epsilon"),
    ("model.init_args.seed", ["-1", "x"], "seed"),
    ("model.init_args.second_order", ["spiral"], "second_order"),
    ("model.init_args.replicator.init_args.width", ["0", "two"], "width"),
    ("model.init_args.replicator.init_args.activation", ["relu6"], "activation"),
    ("data.init_args.batch_size", ["0", "-2", "x"], "batch_size"),
    ("trainer.max_epochs", ["0", "-5", "2.5", "many"], "max_epochs"),
    ("model.init_args.colour", ["red"], "colour"),
    ("trainer.colour", ["red"], "colour"),
    ("model.init_args.init_from", ["missing.ckpt"], "missing.ckpt"),
    ("ckpt_path", ["gone.ckpt"], "gone.ckpt"),
    ("config", ["missing.yaml", "no/such.yaml"], ".yaml"),
]
SOUP_KEYS = [
    ("model.init_args.size", ["0", "-1", "x"], "size"),
    ("model.init_args.attacking_rate", ["2", "-0.5", "nan"], "attacking_rate"),
    ("model.init_args.learn_from_severity", ["-1", "x"], "learn_from_severity"),
    ("model.init_args.train", ["-1", "x"], "train"),
    ("model.init_args.soup_size", ["0", "x"], "soup_size"),
    ("model.init_args.weather", ["rain"], "weather"),
    ("ckpt_path", ["gone.ckpt"], "gone.ckpt"),
]


def broken(keys):
    """A (key, value, named) drawn from ``keys``."""
    return st.sampled_from(keys).flatmap(lambda k: st.sampled_from(k[1]).map(lambda v: (k[0], v, k[2])))


def check_one_line_error(run, named, tmp_path):
    lines = [ln for ln in run.err.splitlines() if ln.strip() and not ln.startswith(LIGHTNING_INFO)]
    assert run.status == 2, (named, run.status, run.err)
    assert len(lines) == 1 and lines[0].startswith("error:"), (named, run.err)
    assert named in lines[0], (named, lines[0])
    assert "Traceback" not in run.err + run.out
    assert not (tmp_path / "lightning_logs").exists()


@PROPERTY
@given(mistake=broken(REPLICATOR_KEYS), command=st.sampled_from(["fit", "validate"]), in_config=st.booleans())
def test_a_broken_replicator_command_line_or_config_ends_in_one_named_error(nsr, tmp_path, mistake, command, in_config):
    key, value, named = mistake
    args = [command, "--config", config("weightwise"), "--trainer.accelerator", "cpu"]
    if in_config and key not in ("ckpt_path", "config"):  # the same mistake written into a second config file
        node: dict = {}
        *path, leaf = key.split(".")
        inner = node
        for part in path:
            inner = inner.setdefault(part, {})
        inner[leaf] = yaml.safe_load(value)
        if isinstance(inner[leaf], float) and inner[leaf] != inner[leaf]:
            inner[leaf] = ".nan"  # yaml spells NaN .nan
        (tmp_path / "broken.yaml").write_text(yaml.safe_dump(node))
        args += ["--config", str(tmp_path / "broken.yaml")]
    else:
        args += [f"--{key}", value]
    if command == "validate" and key == "trainer.max_epochs" and value == "0":
        return  # validate trains nothing: max_epochs 0 is not a mistake there
    check_one_line_error(nsr(*args), named, tmp_path)


@PROPERTY
@given(mistake=broken(SOUP_KEYS), command=st.sampled_from(["fit", "validate"]))
def test_a_broken_soup_command_line_ends_in_one_named_error(nsr, tmp_path, mistake, command):
    key, value, named = mistake
    run = nsr(command, "--config", "soup", "--trainer.accelerator", "cpu", f"--{key}", value)
    check_one_line_error(run, named, tmp_path)


EXPERIMENT_MISTAKES = [
    (["training", "--trials", "0"], "--trials"), (["training", "--trials", "x"], "--trials"),
    (["robustness", "--max-steps", "-1"], "--max-steps"), (["applying", "--seed", "x"], "--seed"),
    (["mixed_soup", "--colour", "red"], "--colour"), (["training", "--architectures", "hexagonal"], "hexagonal"),
    (["nosuch"], "nosuch"), (["training", "--lr", "nan"], "--lr"), (["basins", "--width", "0"], "--width"),
]


@PROPERTY
@given(mistake=st.sampled_from(EXPERIMENT_MISTAKES))
def test_a_broken_experiment_command_line_ends_in_one_named_error(nsr, tmp_path, mistake):
    args, named = mistake
    check_one_line_error(nsr("experiment", *args, "--out", str(tmp_path / "out")), named, tmp_path)
    assert not (tmp_path / "out").exists()


@pytest.fixture
def broken_files(tmp_path):
    (tmp_path / "corrupt.ckpt").write_bytes(b"\x50\x4b\x03\x04 half a zip")
    (tmp_path / "text.ckpt").write_text("not a checkpoint")
    torch.save({"state_dict": {}}, tmp_path / "plain.ckpt")
    torch.save({"nsr": {"kind": "replicator"}}, tmp_path / "incomplete.ckpt")
    return ["missing.ckpt", "corrupt.ckpt", "text.ckpt", "plain.ckpt", "incomplete.ckpt"]


@settings(max_examples=20, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pick=st.integers(0, 4), command=st.sampled_from(["inspect", "export"]), extra=st.sampled_from(
    [[], ["--format", "csv"], ["--format", "xls"], ["--colour", "red"]]))
def test_inspect_and_export_of_a_broken_file_end_in_one_named_error(nsr, tmp_path, broken_files, pick, command, extra):
    name = broken_files[pick]
    if command == "inspect" and extra[:1] == ["--format"]:
        extra = ["--format"]  # an option inspect does not take
    named = extra[0] if extra in (["--format", "xls"], ["--colour", "red"], ["--format"]) else name
    check_one_line_error(nsr(command, str(tmp_path / name), *extra), named, tmp_path)
