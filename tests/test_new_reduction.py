"""A new reduction is one file: a toy reduction declared here only - one setting
of its own, a parameter, a loss term - gets its fairseq flag, its Python API
keyword, its place in a checkpoint, the sweep's overrides, the refusal of
other reductions' settings and a loss the criterion adds, from its
declaration alone."""
import argparse
import math
import os
from dataclasses import replace

import pytest
import torch
from torch import nn

from npy_tome_layer import load_pruned_hubert
from npy_tome_layer.errors import InputError
from npy_tome_layer.reduction import REDUCTION_SETTINGS, REDUCTIONS, TokenReduction
from npy_tome_layer.reduction import register_reduction
from npy_tome_layer.reduction.settings import Setting
from npy_tome_layer.values import whole_number_rule

from .test_pruned_hubert import waveforms

DATA = os.path.join(os.path.dirname(__file__), "data", "st_checkpoints_v1")
TOY_STEP = Setting("toy_step", whole_number_rule(2), 2,
                   "--token-reduction every_kth: keep every k-th frame")


class EveryKth(TokenReduction):
    """Keeps frames 0, k, 2k, ... once, after the init layer, scaled by a
    learned factor; its loss pulls the factor towards 2."""

    settings = (TOY_STEP,)
    uses_rate = False
    loss_names = ("toy",)

    def __init__(self, toy_step: int = 2):
        super().__init__()
        self.step = toy_step
        self.scale = nn.Parameter(torch.ones(1))

    def acts_after(self, layer, init_layer, rate):
        return layer == init_layer

    def reduce(self, tokens, evidence, rate, layer):
        bsz, tsz = tokens.x.shape[:2]
        width = math.ceil(tsz / self.step)
        indices = (torch.arange(width) * self.step).unsqueeze(0).expand(bsz, -1)
        valid = (~tokens.padding_mask).sum(1) if tokens.padding_mask is not None \
            else torch.full((bsz,), tsz)
        new_mask = torch.arange(width).unsqueeze(0) >= \
            torch.div(valid + self.step - 1, self.step, rounding_mode="floor").unsqueeze(1)
        kept = tokens.take(indices, new_mask)
        tokens.outputs["toy_scale"] = self.scale
        return replace(kept, x=kept.x * self.scale)

    def lengths_after(self, valid, run, rate):
        return math.ceil(valid / self.step), math.ceil(run / self.step)

    def loss(self, outputs, sample):
        return {"toy": (outputs["toy_scale"] - 2.0).pow(2).sum() * sample["ntokens"]}


@pytest.fixture
def toy():
    register_reduction("every_kth")(EveryKth)
    try:
        yield EveryKth
    finally:
        REDUCTIONS.pop("every_kth")
        REDUCTION_SETTINGS.pop("toy_step")


def test_its_flag_is_parsed_and_checked_by_fairseqs_parser(toy, capsys):
    from npy_tome_layer.st.model import HubertTransformerPruningModel

    parser = argparse.ArgumentParser()
    HubertTransformerPruningModel.add_args(parser)
    args = parser.parse_args(["--token-reduction", "every_kth", "--toy-step", "3"])
    assert (args.token_reduction, args.toy_step) == ("every_kth", 3)
    with pytest.raises(SystemExit):
        parser.parse_args(["--toy-step", "1"])
    assert "argument --toy-step: must be a whole number >= 2, got '1'" in capsys.readouterr().err


def test_its_api_keyword_and_the_refusal_of_other_reductions_settings(toy, hubert_tiny):
    model = load_pruned_hubert(hubert_tiny, token_reduction="every_kth", toy_step=3,
                               pruning_init_layer=1)
    source, mask = waveforms([16640, 9000])
    with torch.no_grad():
        res = model(source, padding_mask=mask, mask=False, features_only=True)
    assert (~res["padding_mask"]).sum(1).tolist() == [17, 9]  # ceil(51 / 3), ceil(27 / 3)
    assert res["kept_indices"][-1][0, :3].tolist() == [0, 3, 6]
    with pytest.raises(InputError, match=r"toy_step must be a whole number >= 2, got 1"):
        load_pruned_hubert(hubert_tiny, token_reduction="every_kth", toy_step=1)
    with pytest.raises(InputError, match=r"toy_step 3 is read by token_reduction every_kth, "
                                         r"not by 'prune'"):
        load_pruned_hubert(hubert_tiny, pruning_rate=0.8, toy_step=3)
    with pytest.raises(InputError, match=r"pruning_window 5 is read by token_reduction local, "
                                         r"not by 'every_kth'"):
        load_pruned_hubert(hubert_tiny, token_reduction="every_kth", pruning_window=5)


def test_its_setting_and_weights_round_trip_through_a_checkpoint(toy, tmp_path):
    """An ST checkpoint of the toy (made from an older one's weights) loads as
    fairseq-generate loads it: the setting from the checkpoint's args, the
    parameter under the reduction's state-dict prefix."""
    from fairseq import checkpoint_utils

    from npy_tome_layer.st.model import hubert_from_st_checkpoint

    path = toy_checkpoint(tmp_path, toy_step=4, scale=1.5)
    models, _, _ = checkpoint_utils.load_model_ensemble_and_task(
        [path], arg_overrides={"data": DATA})
    reduction = models[0].length_reduction
    assert isinstance(reduction, EveryKth) and reduction.step == 4
    assert reduction.scale.item() == 1.5
    hubert = hubert_from_st_checkpoint(path)
    assert hubert.encoder.final_setting == ("every_kth", 0.9, 1)
    assert hubert.encoder.length_reduction.step == 4
    from npy_tome_layer.io.checkpoints import load_checkpoint
    from npy_tome_layer.tools.inspect_checkpoint import describe

    assert describe(path, load_checkpoint(path)).endswith(
        "; token_reduction every_kth (pruning_init_layer 1, pruning_rate 0.9, toy_step 4)")


def test_its_weights_start_fresh_in_a_training_and_are_required_to_decode(toy, tmp_path):
    """A checkpoint of another reduction (tests/data's conv) switched to the
    toy: a training starting from it (fairseq-train --finetune-from-model
    builds the model itself) starts the toy's parameter fresh; decoding it
    (fairseq rebuilds the model from the checkpoint) is refused in one line."""
    from fairseq import checkpoint_utils, tasks

    state = torch.load(os.path.join(DATA, "conv.pt"), weights_only=True)
    args = state["cfg"]["model"]
    args.token_reduction = "every_kth"
    task_args = argparse.Namespace(**{**vars(state["cfg"]["task"]), "data": DATA})
    model = tasks.setup_task(task_args).build_model(args)
    model.load_state_dict(state["model"])  # the conv's weights left out, the toy's fresh
    assert model.length_reduction.scale.item() == 1.0
    with pytest.raises(InputError, match=r"no weights for token_reduction 'every_kth' "
                                         r"\(encoder.hubert.encoder.length_reduction.scale\)"):
        checkpoint_utils.load_model_ensemble_and_task(
            [os.path.join(DATA, "conv.pt")],
            arg_overrides={"data": DATA, "token_reduction": "every_kth"})


def test_the_sweeps_overrides_keep_or_clear_its_setting(toy, tmp_path):
    from fairseq import checkpoint_utils

    from npy_tome_layer.tools.sweep import pruning_overrides, trained_encoder

    path = toy_checkpoint(tmp_path, toy_step=4, scale=1.0)
    trained = trained_encoder(path).length_reduction
    for reduction, expected in ((None, ("every_kth", 4)), ("prune", ("prune", None))):
        overrides = pruning_overrides(0.8, 1, trained, None, reduction)
        models, _, _ = checkpoint_utils.load_model_ensemble_and_task(
            [path], arg_overrides={"data": DATA, **overrides})
        built = models[0].length_reduction
        assert (built.name, getattr(built, "step", None)) == expected


def test_its_loss_reaches_the_criterion_and_its_parameter(toy, tmp_path):
    from fairseq import checkpoint_utils

    path = toy_checkpoint(tmp_path, toy_step=2, scale=1.5)
    models, _, task = checkpoint_utils.load_model_ensemble_and_task(
        [path], arg_overrides={"data": DATA})
    model = models[0].train()
    criterion = task.build_criterion(argparse.Namespace(
        criterion="speech_and_text_translation", label_smoothing=0.1, sentence_avg=False,
        ignore_prefix_size=0, report_accuracy=True))
    sample = speech_sample(task)
    loss, _, logs = criterion(model, sample)
    toy_term = (1.5 - 2.0) ** 2 * sample["ntokens"]
    assert float(logs["reduction_toy_loss"]) == pytest.approx(toy_term)
    assert loss.item() == pytest.approx(float(logs["st_loss"]) + toy_term, rel=1e-5)
    loss.backward()
    assert float(model.length_reduction.scale.grad) != 0.0
    # a text batch logs the same key, at zero
    text = dict(sample, net_input=dict(src_tokens=sample["target"],
                                       src_lengths=torch.tensor([3, 3]),
                                       prev_output_tokens=sample["net_input"]["prev_output_tokens"]))
    _, _, text_logs = criterion(model, text)
    assert text_logs["reduction_toy_loss"] == 0.0


def toy_checkpoint(tmp_path, toy_step: int, scale: float) -> str:
    """tests/data's conv checkpoint turned into one of the toy: its args
    name the toy and its setting, its state dict has the toy's parameter and
    no conv weights."""
    from fairseq import tasks

    state = torch.load(os.path.join(DATA, "conv.pt"), weights_only=True)
    args = state["cfg"]["model"]
    args.token_reduction, args.toy_step = "every_kth", toy_step
    task_args = argparse.Namespace(**vars(state["cfg"]["task"]))
    task_args.data = DATA
    model = tasks.setup_task(task_args).build_model(args)
    weights = {k: v for k, v in state["model"].items() if ".length_reduction." not in k}
    missing, unexpected = nn.Module.load_state_dict(model, weights, strict=False)
    assert missing == ["encoder.hubert.encoder.length_reduction.scale"] and not unexpected
    with torch.no_grad():
        model.length_reduction.scale.fill_(scale)
    state["model"] = model.state_dict()
    path = str(tmp_path / f"toy_{toy_step}.pt")
    torch.save(state, path)
    return path


def speech_sample(task) -> dict:
    """Two utterances with three-token targets, as the task's collater makes them."""
    dictionary = task.target_dictionary
    g = torch.Generator().manual_seed(0)
    audio = 0.1 * torch.randn(2, 16000, generator=g)
    audio[1, 12000:] = 0
    words = torch.tensor([[dictionary.unk(), 5, dictionary.eos()]] * 2)
    prev = torch.cat([torch.full((2, 1), dictionary.eos()), words[:, :-1]], dim=1)
    return {"id": torch.tensor([0, 1]), "nsentences": 2, "ntokens": 6,
            "net_input": {"src_tokens": audio, "src_lengths": torch.tensor([16000, 12000]),
                          "prev_output_tokens": prev},
            "target": words}
