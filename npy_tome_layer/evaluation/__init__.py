"""What the tools share: trained checkpoints loaded and decoded
(``decoding.py``), interleaved timing (``timing.py``), random-weight encoders
at chosen settings for the speedup at a real size (``reference.py``), PNG
plotting (``plotting.py``)."""
