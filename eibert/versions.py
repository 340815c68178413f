"""Every version constant of eibert's outputs, in one place: bump one when that code's output changes for the
same inputs. Each is part of the cache keys of what it makes and of everything downstream of it (the
student key, harness/stages/node.py's memo); tests/test_versions.py bumps each and checks the keys move."""

STAGES = 2  # importance, vocabulary, student training (eibert.cached_stages; 2: one training loop, no decay on biases/norms)
EXPORT = 5  # the artifact's file format alone (2: INT8 linear layers as integer ops; 3: INT4 ones as MatMulNBits;
# 4: INT4 layers with a step per row unpacked at load into the INT8 kernels, block-wise ones MatMulNBits;
# 5: that unpacking in uint8, not int32: same logits, ~4 KB smaller graph, half the memory at load)
TEACHER_TRAINING = 1  # eibert.teacher's fine-tuning (unchanged by eibert.trainloop: bit-identical weights)
TEACHER_OUTPUTS = 1  # eibert.teacher_outputs: logits and word-level hidden states
AUGMENT = 1  # eibert.augment / eibert.phase_data: augmented texts
TARGETS = 1  # eibert.targets: soft targets of target teachers

NAMES = ("STAGES", "EXPORT", "TEACHER_TRAINING", "TEACHER_OUTPUTS", "AUGMENT", "TARGETS")


def current() -> dict[str, int]:
    """Every version constant as it is now (read at call time)."""
    return {name: globals()[name] for name in NAMES}
