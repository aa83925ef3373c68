"""Build tests/data/st_checkpoints_v1: ST checkpoints trained by fairseq-train and the
outputs they give. The files there were made by this script with the code at commit
f1c86f3 (before the encoder redesign; its imports then named the modules' old places);
run from the repository root it rebuilds them with the code it finds."""
import os, shutil, subprocess, sys, glob
import torch
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, REPO)
import npy_tome_layer  # noqa
from npy_tome_layer.demo.standins import (write_hubert_checkpoint, write_deltalm_checkpoint,
    write_deltalm_dictionary, write_sentencepiece)
from npy_tome_layer.demo.corpus import build_demo_corpus
from npy_tome_layer.demo.phrases import all_sentences
from npy_tome_layer.tools.prepare_mustc import prepare

root = "/tmp/oldckpt/work"; shutil.rmtree(root, ignore_errors=True); os.makedirs(root)
pre = os.path.join(root, "pre"); os.makedirs(pre)
spm_model = write_sentencepiece(all_sentences(), pre + "/spm", 300)
dict_size = write_deltalm_dictionary(spm_model, pre + "/dict.txt")
hubert = pre + "/hubert.pt"; write_hubert_checkpoint(hubert, "tiny", num_clusters=20)
build_demo_corpus(root + "/mustc", "de", {"train": (2, 4), "dev": (1, 2), "tst-COMMON": (1, 2)})
data = root + "/data"
prepare(root + "/mustc", "de", data, spm_model, pre + "/dict.txt", log=lambda *a: None)
out = os.path.join(REPO, "tests/data/st_checkpoints_v1"); shutil.rmtree(out, ignore_errors=True)
os.makedirs(out)
shutil.copy(pre + "/dict.txt", out + "/dict.txt")
with open(out + "/config.yaml", "w") as f:
    f.write("bpe_tokenizer: {bpe: sentencepiece, sentencepiece_model: spm.model}\nvocab_filename: dict.txt\n")
tiny = ["--encoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64", "--encoder-layers", "1",
        "--decoder-layers", "1", "--encoder-attention-heads", "4", "--decoder-attention-heads", "4"]
settings = {
  "schedule": ["--arch", "hubert_transformer_pruning_layer_schedule", "--pruning-max-rate", "1.0",
               "--pruning-min-rate", "0.8", "--pruning-schedule-updates", "2"],
  "merge": ["--arch", "hubert_transformer_pruning_layer", "--token-reduction", "merge",
            "--pruning-rate", "0.8", "--pruning-init-layer", "1"],
  "conv": ["--arch", "hubert_transformer_pruning_layer", "--token-reduction", "conv",
           "--pruning-init-layer", "1"],
}
bin_ = os.path.dirname(sys.executable)
g = torch.Generator().manual_seed(0)
audio = 0.1 * torch.randn(2, 16000, generator=g)
lengths = torch.tensor([16000, 12000])
audio[1, 12000:] = 0
expected = {"audio": audio, "lengths": lengths}
from fairseq import checkpoint_utils
for name, extra in settings.items():
    save = f"{root}/ckpt_{name}"
    cmd = [bin_ + "/fairseq-train", data, "--user-dir", REPO + "/npy_tome_layer",
           "--task", "speech_and_text_translation", "--tgt-lang", "de", "--st-training",
           "--criterion", "speech_and_text_translation", "--optimizer", "adam", "--lr", "1e-3",
           "--cpu", "--no-progress-bar", "--num-workers", "0", "--seed", "1",
           "--required-batch-size-multiple", "1", "--save-dir", save, "--hubert-model-path", hubert,
           "--conv-channels", "16", "--max-tokens", "100000", "--max-update", "2",
           "--valid-subset", "dev", "--no-epoch-checkpoints", "--disable-validation"] + tiny + extra
    subprocess.run(cmd, check=True, capture_output=True)
    state = torch.load(save + "/checkpoint_last.pt", weights_only=True)
    state["last_optimizer_state"] = None  # not needed to load a model; keeps the file small
    torch.save(state, f"{out}/{name}.pt")
    models, _, task = checkpoint_utils.load_model_ensemble_and_task(
        [f"{out}/{name}.pt"], arg_overrides={"data": out})
    m = models[0].eval()
    with torch.no_grad():
        enc = m.encoder(audio, lengths)
        x, mask = m.encoder.hubert.extract_features(audio, padding_mask=torch.arange(16000)[None] >= lengths[:, None])
    expected[name] = {"encoder_out": enc["encoder_out"][0], "hubert": x, "hubert_mask": mask,
                      "keep_rate": m.encoder.hubert.encoder.keep_rate}
    print(name, os.path.getsize(f"{out}/{name}.pt"), x.shape, enc["encoder_out"][0].shape)
torch.save(expected, out + "/expected.pt")
