"""TensorFlow pieces that both sample forms share: assertions that name the file, the scaling
of counts, and reading a file's name back out of a failed pipeline's error."""

from __future__ import annotations

import re

import tensorflow as tf

_ASSERTION = re.compile(r"assertion failed: \[(.+?)\]\s*(?:\n|\[\[|$)")


def error_reason(exc: BaseException) -> str:
    """The gist of a TensorFlow error message: its first line without the op decorations."""
    text = getattr(exc, "message", None) or str(exc)
    text = re.sub(r"\{\{[^}]*\}\}\s*", "", text).split("\n")[0]
    return text.split(" [Op:")[0].strip()


def message_from_error(exc: BaseException) -> str | None:
    """The one-line message of a failed ``require`` assertion in ``exc`` (None if none)."""
    match = _ASSERTION.search(getattr(exc, "message", None) or str(exc))
    # TensorFlow prints the message C-escaped: quotes and backslashes gain a backslash.
    return re.sub(r"\\(['\"\\])", r"\1", match.group(1)) if match else None


def require(ok: tf.Tensor, *parts: str | tf.Tensor) -> tf.Operation:
    """An assertion whose message is the strings ``parts`` joined (lead with the file name)."""
    return tf.debugging.Assert(ok, [tf.strings.join(list(parts))])


def scale_counts(counts: tf.Tensor, apply_log: bool) -> tf.Tensor:
    """float32 counts -> network input, as the reference: ``log(x + 1)`` or ``x / mean(x)``."""
    if apply_log:
        return tf.math.log(counts + tf.constant(1.0))
    return counts / (tf.reduce_sum(counts) / float(counts.shape.num_elements()))
