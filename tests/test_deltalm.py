"""DeltaLM: released-format loading, interleaved decoder layers, MT initialisation."""
import argparse
import os

import pytest
import torch
from fairseq.data import Dictionary

from npy_tome_layer.st.deltalm import DeltaLMModel, deltalm_base, load_released_deltalm
from npy_tome_layer.st.model import load_mt_encoder_decoder
from npy_tome_layer.demo.standins import write_deltalm_checkpoint


class _Task:
    def __init__(self, dictionary):
        self.source_dictionary = self.target_dictionary = dictionary


def tiny_deltalm(dict_size=30, embed=16, ffn=24, heads=2):
    d = Dictionary()
    for i in range(dict_size - len(d)):
        d.add_symbol(f"w{i}")
    args = argparse.Namespace(encoder_embed_dim=embed, encoder_ffn_embed_dim=ffn, encoder_layers=2,
                              decoder_layers=2, encoder_attention_heads=heads,
                              decoder_attention_heads=heads)
    deltalm_base(args)
    return DeltaLMModel.build_model(args, _Task(d)), d


def test_decoder_layers_are_interleaved_with_fairseq_names():
    model, _ = tiny_deltalm()
    names = {n for n, _ in model.decoder.layers[0].named_parameters()}
    for part in ("self_attn.q_proj.weight", "fc3.weight", "fc4.weight", "ffn_layer_norm.weight",
                 "encoder_attn.k_proj.weight", "fc1.weight", "fc2.weight",
                 "final_layer_norm.weight", "self_attn_layer_norm.weight",
                 "encoder_attn_layer_norm.weight"):
        assert part in names
    # order of computation: self-attn -> ffn(fc3/fc4) -> cross-attn -> ffn(fc1/fc2)
    calls = []
    layer = model.decoder.layers[0]
    for name in ("self_attn", "fc3", "encoder_attn", "fc1"):
        getattr(layer, name).register_forward_hook(lambda m, a, o, n=name: calls.append(n))
    model.eval()
    src = torch.tensor([[5, 6, 7, 2]])
    model(src, torch.tensor([4]), torch.tensor([[2, 5, 6]]))
    assert calls == ["self_attn", "fc3", "encoder_attn", "fc1"]


def test_base_and_large_sizes():
    for arch, dims in (("deltalm_base", (768, 3072, 12, 6, 12)),
                       ("deltalm_large", (1024, 4096, 24, 12, 16))):
        from fairseq.models import ARCH_CONFIG_REGISTRY
        args = argparse.Namespace()
        ARCH_CONFIG_REGISTRY[arch](args)
        assert (args.encoder_embed_dim, args.encoder_ffn_embed_dim, args.encoder_layers,
                args.decoder_layers, args.encoder_attention_heads) == dims
        assert args.activation_fn == "gelu" and args.encoder_learned_pos
        assert args.layernorm_embedding and args.no_scale_embedding
        assert not args.encoder_normalize_before


def test_released_file_loads_strictly_and_every_tensor_lands(tmp_path):
    path = str(tmp_path / "deltalm.pt")
    model, d = tiny_deltalm(dict_size=30)
    w = write_deltalm_checkpoint(path, vocab_rows=34, embed=16, ffn=24, encoder_layers=2,
                                 decoder_layers=2, positions=514)
    load_released_deltalm(model.encoder, model.decoder, path)
    enc, dec = model.encoder, model.decoder
    assert torch.equal(enc.embed_tokens.weight, w["src_embedding.embed_tokens.weight"][:30])
    assert torch.equal(enc.embed_positions.weight, w["src_embedding.embed_positions.weight"])
    assert torch.equal(enc.layernorm_embedding.weight, w["src_embedding.emb_layer_norm.weight"])
    assert torch.equal(enc.layers[1].fc2.weight, w["encoder.layers.1.ffn.fc2.weight"])
    assert torch.equal(enc.layers[0].self_attn.v_proj.bias, w["encoder.layers.0.self_attn.v_proj.bias"])
    assert torch.equal(dec.layernorm_embedding.bias, w["tgt_embedding.emb_layer_norm.bias"])
    lay = dec.layers[1]
    assert torch.equal(lay.fc3.weight, w["decoder.layers.1.ffn_1.fc1.weight"])
    assert torch.equal(lay.fc4.bias, w["decoder.layers.1.ffn_1.fc2.bias"])
    assert torch.equal(lay.fc1.weight, w["decoder.layers.1.ffn_2.fc1.weight"])
    assert torch.equal(lay.fc2.weight, w["decoder.layers.1.ffn_2.fc2.weight"])
    assert torch.equal(lay.ffn_layer_norm.weight, w["decoder.layers.1.ffn_layer_norm.weight"])
    assert torch.equal(lay.encoder_attn.out_proj.weight, w["decoder.layers.1.encoder_attn.out_proj.weight"])
    assert dec.output_projection.weight is dec.embed_tokens.weight


def test_dictionary_larger_than_release_keeps_fresh_rows(tmp_path):
    path = str(tmp_path / "deltalm.pt")
    model, _ = tiny_deltalm(dict_size=30)
    fresh = model.encoder.embed_tokens.weight.detach().clone()
    w = write_deltalm_checkpoint(path, vocab_rows=25, embed=16, ffn=24, encoder_layers=2,
                                 decoder_layers=2)
    load_released_deltalm(model.encoder, model.decoder, path)
    assert torch.equal(model.encoder.embed_tokens.weight[:25], w["src_embedding.embed_tokens.weight"])
    assert torch.equal(model.encoder.embed_tokens.weight[25:], fresh[25:])


@pytest.mark.parametrize("edit,word", [
    (lambda w: w.update({"encoder.layers.0.adapter.weight": torch.zeros(1)}), "unknown keys"),
    (lambda w: w.pop("decoder.layers.1.ffn_1.fc1.weight"), "missing keys"),
    (lambda w: w.update({"encoder.layers.0.ffn.fc1.weight": torch.zeros(3, 3)}), "shape"),
])
def test_mismatching_release_is_an_error_listing_keys(tmp_path, edit, word):
    path = str(tmp_path / "deltalm.pt")
    model, _ = tiny_deltalm()
    w = write_deltalm_checkpoint(path, vocab_rows=30, embed=16, ffn=24, encoder_layers=2,
                                 decoder_layers=2)
    edit(w)
    torch.save({"weights": w}, path)
    with pytest.raises(ValueError) as err:
        load_released_deltalm(model.encoder, model.decoder, path)
    assert word in str(err.value) and path in str(err.value)


def test_mt_checkpoint_initialises_st_encoder_decoder(mt_checkpoint, tmp_path):
    path, _ = mt_checkpoint
    from npy_tome_layer.io.checkpoints import load_checkpoint
    weights = load_checkpoint(path)["model"]
    n = int(weights["encoder.embed_tokens.weight"].size(0))
    model, _ = tiny_deltalm(dict_size=n, embed=32, ffn=64, heads=4)  # conftest's TINY_DELTALM
    load_mt_encoder_decoder(model.encoder, model.decoder, path)
    assert torch.equal(model.decoder.layers[1].fc3.weight, weights["decoder.layers.1.fc3.weight"])
    assert torch.equal(model.encoder.layers[0].fc1.bias, weights["encoder.layers.0.fc1.bias"])
    small, _ = tiny_deltalm(dict_size=n + 1, embed=32, ffn=64, heads=4)
    with pytest.raises(ValueError, match=os.path.basename(path)):
        load_mt_encoder_decoder(small.encoder, small.decoder, path)
