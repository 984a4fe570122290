"""Redaction of credentials from error text (kube_balance._redact)."""

from __future__ import annotations

from kube_balance._redact import REDACTED, describe_error, format_exception, redact


def test_redact_hides_known_secrets_url_passwords_and_auth_headers() -> None:
    """Known values, URL userinfo, Bearer/Basic credentials and auth header values are replaced."""
    text = (
        "url='http://bob:hunter2@proxy:3128' 'authorization': 'Bearer abc.def' "
        "Proxy-Authorization: Basic Ym9iOmh1bnRlcjI= cookie=sid=42 the s3cr3t-value"
    )
    out = redact(text, ["s3cr3t-value"])
    for secret in ("hunter2", "abc.def", "Ym9iOmh1bnRlcjI=", "sid=42", "s3cr3t-value"):
        assert secret not in out
    assert "proxy:3128" in out and REDACTED in out


def test_describe_error_keeps_the_type_and_a_one_line_message() -> None:
    """A plain exception is described by its type and message, on one line, bounded."""
    assert describe_error(ValueError("bad\n  value")) == "ValueError: bad value"
    assert describe_error(TimeoutError()) == "TimeoutError"
    assert len(describe_error(ValueError("x" * 10_000))) < 400


def test_format_exception_redacts_the_whole_chain() -> None:
    """A traceback whose chained cause holds a token is printed without it."""
    try:
        try:
            raise RuntimeError("headers: {'Authorization': 'Bearer tok-123456'}")
        except RuntimeError as inner:
            raise ValueError("outer") from inner
    except ValueError as exc:
        text = format_exception(exc)
    assert "tok-123456" not in text and "RuntimeError" in text and "ValueError: outer" in text
