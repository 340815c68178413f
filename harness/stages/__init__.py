"""The stage engine's stages: the contract (`base`), the records (`records`, and eibert.cached_stages for the
model's), one module per kind of stage (`model`: teacher, importance, vocab, student, artifact;
`device`: build, measure), the table of them all (`registry`), how one node runs (`node`) and how
outputs reach other Ray nodes (`travel`). Importing the package itself loads nothing."""
