from . import speech_and_text_translation  # noqa: F401  (registration)
