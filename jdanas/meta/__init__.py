"""DaSS building blocks (Lee, An, Kim, Hwang, ICLR 2023): parameter remapping teacher -> student and
functional embeddings of remapped students."""
from jdanas.meta.embed import embed_exact, embed_students, embed_teacher, noise_input
from jdanas.meta.remap import MODES, remap

__all__ = ["MODES", "embed_exact", "embed_students", "embed_teacher", "noise_input", "remap"]
