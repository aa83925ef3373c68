"""Files: fairseq checkpoints under torch >= 2.6 (``checkpoints.py``) and the
plugin's patches to fairseq's checkpoint code (``fairseq_patches.py``), atomic
writes (``atomic.py``), and the one audio-file check (``audio.py``)."""
