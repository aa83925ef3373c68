"""The built-in corpus and stand-ins for the downloads: official-format HuBERT,
released-format DeltaLM, sentencepiece and dict files with random weights
(``standins.py``), the held-out compositional corpus (``grammar.py``,
``corpus.py``), the phrase set of the other languages (``phrases.py``), and
speech from Debian's synthesizers, voices of several people (``speech.py``)."""
