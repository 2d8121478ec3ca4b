"""Transfer text in the shape of short served texts: sentences cut from long unlabelled
texts, so that a student that will serve sentences or snippets also copies its teacher
on them, not only on windows of whole documents."""

from __future__ import annotations

import numpy as np

# Shorter pieces ("Wow.", "Avoid it!") are mostly fragments of the text around them.
MIN_SENTENCE_WORDS = 4


def sentences_of(
    texts: list[str], per_text: int, seed: int, language: str, exclude: set[str]
) -> list[str]:
    """Up to `per_text` sentences of each text (of at least MIN_SENTENCE_WORDS words,
    chosen at random with `seed`), none of them a whole text already used or an excluded
    (labelled) text, each once."""
    if per_text < 1:
        return []
    import sentencex  # rule-based; a language it lacks rules for gets its generic ones

    rng = np.random.default_rng(seed)
    seen = set(exclude) | set(texts)
    out = []
    for text in texts:
        candidates = []
        for sentence in sentencex.segment(language, text):
            words = sentence.split()
            sentence = " ".join(words)
            if len(words) >= MIN_SENTENCE_WORDS and sentence not in seen:
                seen.add(sentence)
                candidates.append(sentence)
        if len(candidates) > per_text:
            picked = sorted(rng.choice(len(candidates), per_text, replace=False))
            candidates = [candidates[i] for i in picked]
        out += candidates
    return out
