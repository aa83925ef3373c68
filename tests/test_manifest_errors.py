"""Bad speech input fails once, clearly, naming the TSV row and the file."""
import numpy as np
import pytest
import soundfile as sf
from fairseq.data import Dictionary

from npy_tome_layer.st.dataset import ManifestError, SpeechTranslationDataset
from npy_tome_layer.st.dataset import COLUMNS

HEADER = "\t".join(COLUMNS)


def make(tmp_path, rows, header=HEADER):
    tsv = tmp_path / "train.tsv"
    tsv.write_text(header + "\n" + "\n".join(rows) + "\n")
    return str(tsv)


def load(tsv):
    return SpeechTranslationDataset.from_tsv(tsv, Dictionary(), lambda s: s)


@pytest.fixture
def wav(tmp_path):
    path = tmp_path / "talk.wav"
    sf.write(path, np.zeros(16000, np.float32), 16000)
    return str(path)


def row(audio, n=16000, rid="utt1"):
    return f"{rid}\t{audio}\t{n}\tHallo\tHello\tspk"


def test_good_rows_read_back_exact_samples(tmp_path):
    path = tmp_path / "talk.wav"
    samples = (np.arange(32000) % 200 - 100).astype(np.float32) / 128.0
    sf.write(path, samples, 16000, subtype="FLOAT")
    ds = load(make(tmp_path, [row(f"{path}:1000:5000", 5000), row(str(path), 32000, "utt2")]))
    np.testing.assert_array_equal(ds[0]["source"].numpy(), samples[1000:6000])
    assert len(ds[1]["source"]) == 32000 and ds.size(0) == (5000, 2)  # <unk> </s>


def test_missing_file(tmp_path):
    tsv = make(tmp_path, [row(str(tmp_path / "gone.wav"))])
    with pytest.raises(ManifestError, match=r"train.tsv:2 \(id utt1\): audio file .*gone.wav does not exist"):
        load(tsv)


def test_corrupt_file(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....garbage")
    with pytest.raises(ManifestError, match=r"train.tsv:2 .*cannot read audio file .*bad.wav"):
        load(make(tmp_path, [row(str(bad))]))


def test_empty_file(tmp_path):
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 16000)
    with pytest.raises(ManifestError, match=r"train.tsv:2 .*empty.wav is empty"):
        load(make(tmp_path, [row(str(empty))]))


def test_wrong_sample_rate(tmp_path):
    path = tmp_path / "talk8k.wav"
    sf.write(path, np.zeros(8000, np.float32), 8000)
    with pytest.raises(ManifestError, match=r"train.tsv:3 .*talk8k.wav has sample rate 8000, expected 16000"):
        load(make(tmp_path, [row(_ok(tmp_path)), row(str(path), 8000, "b")]))


def _ok(tmp_path):
    p = tmp_path / "ok.wav"
    sf.write(p, np.zeros(16000, np.float32), 16000)
    return str(p)


def test_segment_outside_file(tmp_path, wav):
    with pytest.raises(ManifestError, match=r"train.tsv:2 .*segment 15000:5000 lies outside"):
        load(make(tmp_path, [row(f"{wav}:15000:5000", 5000)]))


def test_missing_column(tmp_path, wav):
    header = "\t".join(c for c in COLUMNS if c != "speaker")
    with pytest.raises(ManifestError, match=r"train.tsv:1: header lacks column\(s\) \['speaker'\]"):
        load(make(tmp_path, ["utt1\t" + wav + "\t16000\tHallo\tHello"], header=header))


def test_short_row(tmp_path, wav):
    with pytest.raises(ManifestError, match=r"train.tsv:3: 2 fields, header has 6"):
        load(make(tmp_path, [row(wav), "utt2\t" + wav]))
