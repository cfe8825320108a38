"""The box tokenizer of the layout-to-image conditioner (D.2.1): a `Layout` as a fixed-length token sequence.

Notation: G grid points per side, K classes, B boxes at most.

1. Positions. A normalised point (x, y) snaps to the nearest of G x G grid
   points spaced 1 / (G - 1) apart, corners included, and is flattened to one
   token, row-major: `round(y (G - 1)) * G + round(x (G - 1))`, in [0, G^2).
   Decoding gives the grid point back, so a coordinate moves by at most half
   a grid step, 1 / (2 (G - 1)).
2. Classes follow the positions in one vocabulary: class c is token G^2 + c;
   the padding token is G^2 + K, the last. `vocab_size` = G^2 + K + 1.
3. A box is the triple (l, b, c) of D.2: its top-left position, its
   bottom-right position, its class.
4. Order: boxes sort by their snapped area, largest first, then by l, b and c
   (top to bottom, left to right), so equal layouts give equal sequences and
   re-encoding a decoded sequence gives it back. Only the B largest are kept;
   the rest are dropped. Empty triples (pad, pad, pad) fill up to B.
5. Window. Two more position tokens close the sequence: the top-left and
   bottom-right corners of the part of the image the sample shows (a crop),
   the whole image by default. Boxes stay in image coordinates; those lying
   wholly outside the window are dropped. Length L = 3 B + 2.

With B = 30 this is the reference's 92-token sequence (30 objects x 3 + 2 crop
tokens, Tab. 17). The reference differs in ways we do not copy: it puts the
class first in each triple, lets class ids share the ids of positions (one
8192-id space, positions on int(sqrt(8192)) = 90 points a side, pad 8191),
and shuffles the boxes instead of ordering them. `largest_grid` (in
`ldm.conditioning.config`, beside `LayoutTokenizerConfig`) gives the G
that fits K classes into the paper's 8192-id vocabulary (90 for COCO's 80).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import torch
from torch import Tensor

from ldm.conditioning.config import LayoutTokenizerConfig
from ldm.data.layouts import Box, Layout
from ldm.errors import InvalidInput

PAPER_SEQ_LEN = 92
FULL_WINDOW = (0.0, 0.0, 1.0, 1.0)


class LayoutTokenizer:
    """Layout <-> [L] LongTensor of (l, b, c) box triples and the window's two corners (module docstring)."""

    def __init__(self, config: LayoutTokenizerConfig) -> None:
        self.config = config
        self.positions = config.grid**2
        self.pad = self.positions + config.num_classes

    @property
    def vocab_size(self) -> int:
        """G^2 positions + K classes + 1 padding token."""
        return self.config.vocab_size

    @property
    def seq_len(self) -> int:
        """L = 3 B + 2."""
        return self.config.seq_len

    def position(self, x: float, y: float) -> int:
        """Normalised (x, y) -> its grid point's token, row-major."""
        step = self.config.grid - 1
        return round(y * step) * self.config.grid + round(x * step)

    def point(self, token: int) -> tuple[float, float]:
        """A position token -> its grid point (x, y), normalised."""
        row, col = divmod(token, self.config.grid)
        step = self.config.grid - 1
        return col / step, row / step

    def encode(self, layout: Layout, window: tuple[float, float, float, float] = FULL_WINDOW) -> Tensor:
        """Layout (+ window (x0, y0, x1, y1) shown of the image) -> [L] token ids; the B largest boxes kept."""
        triples = sorted(self._triple(box) for box in layout.boxes if _meets(box, window))
        triples = triples[: self.config.max_boxes]
        tokens = [token for _, *triple in triples for token in triple]
        tokens += [self.pad] * (3 * self.config.max_boxes - len(tokens))
        tokens += [self.position(window[0], window[1]), self.position(window[2], window[3])]
        return torch.tensor(tokens, dtype=torch.long)  # (L,)

    def encode_batch(self, layouts: list[Layout]) -> Tensor:
        """N layouts (whole images) -> [N x L] token ids."""
        return torch.stack([self.encode(layout) for layout in layouts])  # (N, L)

    def encode_json(self, texts: Sequence[str]) -> Tensor:
        """N layouts as JSON strings (a training batch's "layout": `json.dumps(layout.to_dict())`) -> [N x L]."""
        return self.encode_batch([Layout.from_dict(json.loads(text)) for text in texts])

    def _triple(self, box: Box) -> tuple[int, int, int, int]:
        """(-snapped area, l, b, c): the sort key of step 4 followed by the tokens."""
        if box.class_id >= self.config.num_classes:
            raise InvalidInput(f"layout: class_id {box.class_id} is not below the tokenizer's "
                               f"num_classes {self.config.num_classes}")
        top_left, bottom_right = self.position(box.x0, box.y0), self.position(box.x1, box.y1)
        (r0, c0), (r1, c1) = divmod(top_left, self.config.grid), divmod(bottom_right, self.config.grid)
        return -(r1 - r0) * (c1 - c0), top_left, bottom_right, self.positions + box.class_id

    def decode(self, tokens: Tensor, key: str = "") -> Layout:
        """[L] token ids -> the Layout of its boxes (corners on the grid, in sequence order)."""
        ids = self._check(tokens)
        boxes = []
        for index in range(0, 3 * self.config.max_boxes, 3):
            l, b, c = ids[index : index + 3]
            if (l, b, c) == (self.pad,) * 3:
                continue
            if not (l < self.positions and b < self.positions and self.positions <= c < self.pad):
                raise InvalidInput(f"layout tokens {index}..{index + 2}: {[l, b, c]} is not a (position, "
                                   f"position, class) triple nor padding; positions < {self.positions}, "
                                   f"classes {self.positions}..{self.pad - 1}")
            (x0, y0), (x1, y1) = self.point(l), self.point(b)
            try:
                boxes.append(Box(class_id=c - self.positions, x0=x0, y0=y0, x1=x1, y1=y1))
            except ValueError as exc:
                raise InvalidInput(f"layout tokens {index}..{index + 2}: {exc}") from None
        return Layout(key=key, height=None, width=None, boxes=tuple(boxes))

    def decode_window(self, tokens: Tensor) -> tuple[float, float, float, float]:
        """[L] token ids -> the window (x0, y0, x1, y1) its last two tokens encode."""
        ids = self._check(tokens)
        if max(ids[-2:]) >= self.positions:
            raise InvalidInput(f"layout tokens {self.seq_len - 2}..{self.seq_len - 1}: {ids[-2:]} are not "
                               f"positions (< {self.positions})")
        return (*self.point(ids[-2]), *self.point(ids[-1]))

    def _check(self, tokens: Tensor) -> list[int]:
        """The ids of a [L] LongTensor, checked for length and range."""
        if tokens.shape != (self.seq_len,):
            raise InvalidInput(f"layout tokens: shape {tuple(tokens.shape)}, expected ({self.seq_len},)")
        ids = tokens.tolist()
        if min(ids) < 0 or max(ids) >= self.vocab_size:
            raise InvalidInput(f"layout tokens: ids must lie in 0..{self.vocab_size - 1}, got {min(ids)}..{max(ids)}")
        return ids


def _meets(box: Box, window: tuple[float, float, float, float]) -> bool:
    """Whether the box touches the window (a box wholly outside it is dropped)."""
    return box.x1 >= window[0] and box.x0 <= window[2] and box.y1 >= window[1] and box.y0 <= window[3]
