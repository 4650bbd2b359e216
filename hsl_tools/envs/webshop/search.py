"""WebShop's product search without Java: Lucene's English analyzer and BM25, to the bit.

WebShop searches a Lucene index (Pyserini/Anserini: BM25 with k1 0.9, b 0.4; the English
analyzer: standard tokenizer, possessives, lowercase, the classic stop set, Porter stemming).
Libraries like bm25s score with exact document lengths; Lucene stores each length in one
byte (`SmallFloat.intToByte4`) and scores in float32, and those roundings reorder results, so
the scorer is written here over a scipy sparse matrix, with Lucene's arithmetic. Tokens follow
Unicode word boundaries (the `regex` module's UAX #29 mode, as Lucene's tokenizer does).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from functools import cache

import numpy as np
import regex
from nltk.stem.porter import PorterStemmer
from scipy.sparse import csc_matrix

K1, B = np.float32(0.9), np.float32(0.4)
TOP_N = 50

# Lucene's EnglishAnalyzer.ENGLISH_STOP_WORDS_SET
STOP_WORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their "
    "then there these they this to was will with".split())

_BOUNDARY = regex.compile(r"(?w)\b")
# What Lucene's standard tokenizer emits: runs of letters and digits as Unicode word boundaries
# cut them (letters, numbers, Katakana, Hebrew; each ideograph, Hiragana or Thai-like character
# alone), and each pictograph as a token of its own (type <EMOJI>: ★, ❤, ®, 🌸). Lucene's
# Unicode tables are older than the `regex` module's: the Miscellaneous Symbols and Dingbats
# ranges below were pictographic there. Other symbols (❶, •, 【) are not tokens.
_WORDLIKE = regex.compile(r"[\p{Word_Break=ALetter}\p{Word_Break=Numeric}\p{Word_Break=Katakana}"
                          r"\p{Word_Break=Hebrew_Letter}\p{Ideographic}\p{Script=Hiragana}"
                          r"\p{Line_Break=Complex_Context}]")
_PICTOGRAPH = regex.compile(r"[\p{Extended_Pictographic}\u2600-\u2605\u2607-\u2612"
                            r"\u2614-\u2685\u2690-\u2705\u2708-\u2712]")
_POSSESSIVE = ("'s", "'S", "\u2019s", "\u2019S", "\uff07s", "\uff07S")


def _is_token(segment: str) -> bool:
    return bool(_WORDLIKE.search(segment)) or _PICTOGRAPH.match(segment) is not None


@cache
def _stemmer() -> PorterStemmer:
    return PorterStemmer(mode=PorterStemmer.MARTIN_EXTENSIONS)


@cache
def _stem(word: str) -> str:
    return _stemmer().stem(word, to_lowercase=False)


def analyze(text: str) -> list[str]:
    """The terms Lucene's English analyzer makes of a text, in order."""
    terms = []
    for segment in _BOUNDARY.split(text):
        if not segment or not _is_token(segment):
            continue
        if segment.endswith(_POSSESSIVE):
            segment = segment[:-2]
        term = segment.lower()
        if term and term not in STOP_WORDS:
            terms.append(_stem(term))
    return terms


def _int4(i: int) -> int:
    """Lucene's SmallFloat.longToInt4: 4 significant bits, order-preserving."""
    bits = i.bit_length()
    if bits < 4:
        return i
    shift = bits - 4
    return ((i >> shift) & 0x07) | ((shift + 1) << 3)


def _from_int4(i: int) -> int:
    bits, shift = i & 0x07, (i >> 3) - 1
    return bits if shift == -1 else (bits | 0x08) << shift


_FREE = 255 - _int4(2**31 - 1)  # byte values that store a length exactly (24)


def encoded_length(n: int) -> int:
    """A field length as Lucene's norms store it and BM25 reads it back (intToByte4 then
    byte4ToInt): exact below 24 tokens, then rounded down to 4 significant bits."""
    if n < _FREE:
        return n
    return _FREE + _from_int4(_int4(n - _FREE))


class SearchEngine:
    """BM25 over documents as Lucene scores it; `search` returns ids best first."""

    def __init__(self, ids: Sequence[str], texts: Iterable[str]) -> None:
        self.ids = list(ids)
        self.vocab: dict[str, int] = {}
        rows, cols, counts, lengths = [], [], [], []
        for d, text in enumerate(texts):
            terms = Counter(analyze(text))
            lengths.append(sum(terms.values()))
            for term, n in terms.items():
                rows.append(self.vocab.setdefault(term, len(self.vocab)))
                cols.append(d)
                counts.append(n)
        n_docs = len(self.ids)
        self.tf = csc_matrix((np.array(counts, np.float32), (rows, cols)),
                             shape=(len(self.vocab), n_docs)).T.tocsc()  # docs x terms
        self.df = np.diff(self.tf.indptr)
        avgdl = np.float32(sum(lengths) / n_docs)
        decoded = np.array([encoded_length(n) for n in lengths], np.float32)
        self.norm_inverse = np.float32(1) / (K1 * ((np.float32(1) - B) + B * decoded / avgdl))
        self.n_docs = n_docs
        # Lucene breaks score ties by index order; WebShop's index is ordered by asin
        self.tie_rank = np.argsort(np.argsort(np.array(self.ids, dtype=object)))

    def scores(self, query: str) -> np.ndarray:
        """Every document's score (float32; 0 for documents matching no term)."""
        total = np.zeros(self.n_docs, np.float64)
        for term, boost in Counter(analyze(query)).items():
            column = self.vocab.get(term)
            if column is None:
                continue
            start, end = self.tf.indptr[column], self.tf.indptr[column + 1]
            docs, freq = self.tf.indices[start:end], self.tf.data[start:end]
            df = end - start
            idf = np.float32(np.log(1 + (self.n_docs - df + 0.5) / (df + 0.5)))
            weight = np.float32(boost) * idf
            total[docs] += weight - weight / (np.float32(1) + freq * self.norm_inverse[docs])
        return total.astype(np.float32)

    def search(self, query: str, k: int = TOP_N) -> list[tuple[str, float]]:
        """The top `k` (id, score), ordered by score, ties by id."""
        scores = self.scores(query)
        hits = np.flatnonzero(scores > 0)
        order = np.lexsort((self.tie_rank[hits], -scores[hits]))[:k]
        return [(self.ids[i], float(scores[i])) for i in hits[order]]
