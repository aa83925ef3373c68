"""Installation-level behaviour: registration, checkpoint loading under torch 2.x."""
import os
import subprocess
import sys

import pytest
import torch
from fairseq import checkpoint_utils
from fairseq.data import Dictionary

from npy_tome_layer.io.checkpoints import CheckpointError
from npy_tome_layer.demo.standins import write_deltalm_checkpoint

from .conftest import REPO

NAMES = """
from fairseq.tasks import TASK_REGISTRY
from fairseq.models import MODEL_REGISTRY, ARCH_MODEL_REGISTRY
from fairseq.criterions import CRITERION_REGISTRY
assert "speech_and_text_translation" in TASK_REGISTRY
assert "speech_and_text_translation" in CRITERION_REGISTRY
assert {"deltalm", "hubert_transformer_pruning"} <= set(MODEL_REGISTRY)
assert {"deltalm_base", "deltalm_large", "hubert_transformer_pruning_layer",
        "hubert_transformer_pruning_layer_schedule"} <= set(ARCH_MODEL_REGISTRY)
print("REGISTERED")
"""


def run_python(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd="/")


def test_fresh_import_registers_everything():
    proc = run_python("import npy_tome_layer\n" + NAMES)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "REGISTERED" in proc.stdout


def test_user_dir_import_registers_everything():
    code = ("from argparse import Namespace\nfrom fairseq import utils\n"
            f"utils.import_user_module(Namespace(user_dir={os.path.join(REPO, 'npy_tome_layer')!r}))\n"
            + NAMES)
    proc = run_python(code)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "REGISTERED" in proc.stdout


def test_without_the_plugin_torch_refuses_fairseq_pickles(tmp_path, hubert_tiny):
    """The failure the fix exists for (guards against a torch that changed again)."""
    proc = run_python(f"import torch\ntorch.load({hubert_tiny!r})")
    assert proc.returncode != 0 and "weights_only" in proc.stderr.replace("Weights only", "weights_only")


def test_official_hubert_checkpoint_loads(hubert_tiny):
    state = checkpoint_utils.load_checkpoint_to_cpu(hubert_tiny)
    assert isinstance(state["task_state"]["dictionaries"][0], Dictionary)
    assert state["cfg"]["model"]["_name"] == "hubert"
    assert "encoder.layers.0.self_attn.q_proj.weight" in state["model"]


def test_released_deltalm_file_loads(tmp_path):
    path = str(tmp_path / "deltalm.pt")
    weights = write_deltalm_checkpoint(path, vocab_rows=20, embed=8, ffn=16,
                                       encoder_layers=1, decoder_layers=1)
    state = checkpoint_utils.load_checkpoint_to_cpu(path)
    assert set(state) == {"weights"}
    assert torch.equal(state["weights"]["decoder.layers.0.ffn_1.fc1.weight"],
                       weights["decoder.layers.0.ffn_1.fc1.weight"])


def test_fairseq_train_checkpoint_loads(mt_checkpoint):
    path, _ = mt_checkpoint
    state = checkpoint_utils.load_checkpoint_to_cpu(path)
    assert state["cfg"]["model"].arch == "deltalm_base"  # an argparse.Namespace
    assert state["optimizer_history"][-1]["num_updates"] == 3
    assert any(k.startswith("decoder.layers.0.fc3") for k in state["model"])


@pytest.mark.parametrize("content,words", [
    (b"this is a text file\n", "not a PyTorch checkpoint"),
    (b"", "empty"),
])
def test_non_checkpoint_files_name_the_path(tmp_path, content, words):
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as err:
        checkpoint_utils.load_checkpoint_to_cpu(str(path))
    assert str(path) in str(err.value) and words in str(err.value)


def test_truncated_checkpoint_names_the_path(tmp_path, hubert_tiny):
    data = open(hubert_tiny, "rb").read()
    path = tmp_path / "truncated.pt"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as err:
        checkpoint_utils.load_checkpoint_to_cpu(str(path))
    assert str(path) in str(err.value)


def test_missing_checkpoint_names_the_path(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        checkpoint_utils.load_checkpoint_to_cpu(str(tmp_path / "nope.pt"))


def test_unknown_pickled_class_is_still_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "payload": OSError("not allow-listed")}, path)
    with pytest.raises(CheckpointError, match="evil.pt"):
        checkpoint_utils.load_checkpoint_to_cpu(str(path))


def mode_configs():
    folder = os.path.join(REPO, "configs", "mustc")
    return sorted(name for name in os.listdir(folder)
                  if name.startswith("st_") and name.endswith(".args"))


@pytest.mark.parametrize("name", mode_configs())
def test_every_mode_config_parses_with_fairseqs_parser_and_builds_its_reduction(name):
    """Each mode's flags, after the shared st.args as the scripts pass them,
    are known to fairseq's parser with the plugin, their values pass their
    checks, and its reduction builds from them (a CTC head's size is the
    data's: given here)."""
    from fairseq import options

    from npy_tome_layer.reduction import REDUCTIONS, build_reduction
    from npy_tome_layer.st.model import hubert_arguments

    words = []
    for config in ("st.args", name):
        with open(os.path.join(REPO, "configs", "mustc", config)) as f:
            words += [w for line in f if not line.lstrip().startswith("#") for w in line.split()]
    args = options.parse_args_and_arch(options.get_training_parser(), [
        "data", "--user-dir", os.path.join(REPO, "npy_tome_layer"),
        "--task", "speech_and_text_translation"] + words)
    settings = hubert_arguments(args)
    reduction = settings["token_reduction"]
    own = {s.name: settings[s.name] for s in REDUCTIONS[reduction].settings}
    if "ctc_vocab_size" in own:
        own["ctc_vocab_size"] = 30
    if "pruning_coverage" in own and own["pruning_coverage"] is None:
        own["pruning_coverage"] = 0.9  # chosen on dev by the study (choose_coverage)
    assert build_reduction(reduction, 8, **own).name == reduction
