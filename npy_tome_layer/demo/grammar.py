"""A compositional demo language: subject x verb x object x place.

Every English sentence is ``SUBJECT VERB OBJECT PLACE.`` with six choices
per slot (6^4 = 1296 sentences); the translations are built from the same
slots with word-for-word correct lexicons, agreement handled in the lexicon
(nominative subjects, accusative objects, third-person-singular verbs, since
every subject is third-person singular; only inanimate objects, so Spanish
needs no personal "a"). Held-out sentences can then be new combinations of
known words, which a model can only translate if it has learnt the parts.
"""
import itertools
import random
from typing import Dict, List, Sequence, Tuple

SLOTS = ("subject", "verb", "object", "place")

LEXICON: Dict[str, Dict[str, List[str]]] = {
    "en": {
        "subject": ["the man", "the woman", "the child", "my friend", "the teacher", "the doctor"],
        "verb": ["sees", "buys", "finds", "paints", "wants", "carries"],
        "object": ["the car", "the house", "the book", "the apple", "the table", "the letter"],
        "place": ["in the garden", "in the city", "at school", "at home", "in the evening",
                  "in the park"],
    },
    "de": {
        "subject": ["der Mann", "die Frau", "das Kind", "mein Freund", "der Lehrer", "der Arzt"],
        "verb": ["sieht", "kauft", "findet", "malt", "will", "trägt"],
        "object": ["das Auto", "das Haus", "das Buch", "den Apfel", "den Tisch", "den Brief"],
        "place": ["im Garten", "in der Stadt", "in der Schule", "zu Hause", "am Abend", "im Park"],
    },
    "es": {
        "subject": ["el hombre", "la mujer", "el niño", "mi amigo", "el profesor", "el médico"],
        "verb": ["ve", "compra", "encuentra", "pinta", "quiere", "lleva"],
        "object": ["el coche", "la casa", "el libro", "la manzana", "la mesa", "la carta"],
        "place": ["en el jardín", "en la ciudad", "en la escuela", "en casa", "por la tarde",
                  "en el parque"],
    },
    "fr": {
        "subject": ["l'homme", "la femme", "l'enfant", "mon ami", "le professeur", "le médecin"],
        "verb": ["voit", "achète", "trouve", "peint", "veut", "porte"],
        "object": ["la voiture", "la maison", "le livre", "la pomme", "la table", "la lettre"],
        "place": ["dans le jardin", "en ville", "à l'école", "à la maison", "le soir",
                  "dans le parc"],
    },
}
LANGUAGES = tuple(lang for lang in LEXICON if lang != "en")

Combination = Tuple[int, int, int, int]


def sentence(lang: str, combination: Combination) -> str:
    words = " ".join(LEXICON[lang][slot][i] for slot, i in zip(SLOTS, combination))
    return words[0].upper() + words[1:] + "."


def combinations() -> List[Combination]:
    return list(itertools.product(*(range(len(LEXICON["en"][slot])) for slot in SLOTS)))


def split_combinations(sizes: Dict[str, int], seed: int = 1) -> Dict[str, List[Combination]]:
    """Disjoint sets of combinations per split, the first (train) first in
    ``sizes``: no sentence of one split occurs in another, and train holds
    every word (six sentences that together use each choice of every slot,
    then random ones), so a held-out sentence is new only as a combination."""
    n_choices = len(LEXICON["en"]["subject"])
    cover = [tuple((i + k) % n_choices for k in range(len(SLOTS))) for i in range(n_choices)]
    pool = [c for c in combinations() if c not in cover]
    random.Random(seed).shuffle(pool)
    train, *held_out = sizes
    if sizes[train] < len(cover):
        raise ValueError(f"{train} needs at least {len(cover)} sentences to hold every word")
    if sum(sizes.values()) > len(cover) + len(pool):
        raise ValueError(f"{sum(sizes.values())} sentences asked, the grammar has "
                         f"{len(cover) + len(pool)}")
    out, start = {}, 0
    for split in held_out:
        out[split] = pool[start:start + sizes[split]]
        start += sizes[split]
    out[train] = cover + pool[start:start + sizes[train] - len(cover)]
    return {split: out[split] for split in sizes}


def pairs(tgt_lang: str, combos: Sequence[Combination]) -> List[Tuple[str, str]]:
    return [(sentence("en", c), sentence(tgt_lang, c)) for c in combos]


def all_sentences() -> List[str]:
    """Every sentence of every language (for a sentencepiece model)."""
    return [sentence(lang, c) for lang in LEXICON for c in combinations()]
