"""rankrl data synthesis: corpora, candidate mining, teacher labelling, filtering and dataset writing."""
