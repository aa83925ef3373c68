from .speech_translation_dataset import (  # noqa: F401
    ManifestError,
    SpeechTranslationDataset,
    parse_audio_ref,
    read_manifest,
)
