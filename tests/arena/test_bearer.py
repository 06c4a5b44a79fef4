"""``Authorization: Bearer <token>`` is read strictly, the same way everywhere (``arena.bearer``)."""

import pytest

from arena.bearer import MAX_TOKEN_CHARS, BearerError, admin_refusal, bearer_token, is_token68

TOKEN = "v1.eyJrIjoicGxheWVyIn0.4b1c-_~+/=="  # every token68 character class, padding included


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_the_scheme_is_case_insensitive(scheme: str) -> None:
    assert bearer_token(f"{scheme} {TOKEN}") == TOKEN


def test_no_header_is_missing() -> None:
    with pytest.raises(BearerError) as caught:
        bearer_token(None)
    assert caught.value.missing


@pytest.mark.parametrize(
    "header",
    [
        TOKEN,  # the raw token, no scheme
        "dev-admin-token",
        f"Basic {TOKEN}",  # another scheme
        f"Bearer: {TOKEN}",
        f"Bearer  {TOKEN}",  # two spaces
        f"Bearer\t{TOKEN}",  # a tab
        f" Bearer {TOKEN}",
        f"Bearer {TOKEN} ",
        f"Bearer {TOKEN} extra",
        f"Bearer {TOKEN}, Bearer {TOKEN}",
        f"Bearer{TOKEN}",
        "Bearer ",
        "Bearer",
        "",
        "Bearer a=b",  # '=' only as trailing padding
        "Bearer =abc",
        "Bearer tok\u00e9n",  # not ASCII
        "Bearer tok\x00en",
        "Bearer tok%20en",
        "Bearer tok\"en",
        "Bearer \u212aey",  # KELVIN SIGN folds to k under Unicode case-insensitivity: not here
        "Be\u0430rer abc",  # a Cyrillic a in the scheme
        "Bearer " + "a" * (MAX_TOKEN_CHARS + 1),
    ],
)
def test_anything_but_exactly_bearer_space_token68_is_refused(header: str) -> None:
    with pytest.raises(BearerError) as caught:
        bearer_token(header)
    assert not caught.value.missing
    assert "Bearer <token>" in str(caught.value)


def test_the_longest_token_is_accepted() -> None:
    assert bearer_token("Bearer " + "a" * MAX_TOKEN_CHARS) == "a" * MAX_TOKEN_CHARS


def test_an_admin_token_matches_only_in_the_exact_bearer_form() -> None:
    expected = "s3cret-admin-token"
    assert admin_refusal("Bearer s3cret-admin-token", expected) is None
    assert admin_refusal("bearer s3cret-admin-token", expected) is None
    assert admin_refusal(None, expected) == "the admin bearer token is required"
    for header in ("s3cret-admin-token", "Bearer s3cret-admin-token ", "Basic s3cret-admin-token"):
        assert "Bearer <token>" in str(admin_refusal(header, expected)), header
    for header in ("Bearer s3cret-admin-tokeN", "Bearer s3cret-admin-token2", "Bearer s3cret"):
        assert admin_refusal(header, expected) == "wrong admin token", header


def test_is_token68() -> None:
    assert is_token68(TOKEN) and is_token68("abc==")
    for bad in ("", "a b", "a=b", "é", "a,b", "a" * (MAX_TOKEN_CHARS + 1)):
        assert not is_token68(bad), bad
