"""attend's selections parsed by hand-computed expectations: layers, heads, queries, token names."""

import pytest

from vitcli.core.select import HeadSelection, parse_heads, parse_layers, parse_query, prefix_names, token_name


@pytest.mark.parametrize("text, expected", [
    ("all", list(range(12))), (" ALL ", list(range(12))), ("0", [0]), ("-1", [11]), ("-12", [0]),
    ("2:5", [2, 3, 4]), (":2", [0, 1]), ("10:", [10, 11]), ("-3:", [9, 10, 11]), ("3,1,1,-1", [1, 3, 11]),
])
def test_parse_layers(text: str, expected: list[int]) -> None:
    assert parse_layers(text, 12) == expected


@pytest.mark.parametrize("text, message", [
    ("12", "layer 12 is out of range: there are 12"), ("-13", "layer -13 is out of range"),
    ("a", "'a' is not a layer"), ("1:2:3", "'1:2:3' is not a range A:B"), ("5:2", "'5:2' selects no layer of 12"),
    ("x:2", "'x' is not a layer"), ("1,,2", "'' is not a layer"),
])
def test_parse_layers_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_layers(text, 12)


def test_parse_heads() -> None:
    assert parse_heads("all", 3) == HeadSelection([0, 1, 2]) and parse_heads("all", 3).labels == ["0", "1", "2"]
    mean = parse_heads("Mean", 3)
    assert mean == HeadSelection([0, 1, 2], "mean") and mean.labels == ["mean"]
    assert parse_heads("max", 2).fusion == "max" and parse_heads("min", 2).fusion == "min"
    assert parse_heads("2,0,2", 3).heads == [0, 2] and parse_heads("-1", 3).heads == [2]
    with pytest.raises(ValueError, match="head 3 is out of range: there are 3"):
        parse_heads("3", 3)
    with pytest.raises(ValueError, match="'avg' is not a head index or mean\\|max\\|min"):
        parse_heads("avg", 3)


# grid 3 x 5 behind 2 prefix tokens (cls, dist): patch (r, c) is token 2 + 5r + c; 17 tokens
@pytest.mark.parametrize("text, expected", [
    ("cls", [0]), ("all", None), ("1,2", [9]), ("0,0", [2]), ("-1,-1", [16]), ("2, 4", [16]), ("4", [4]), ("-1", [16]),
])
def test_parse_query(text: str, expected: list[int] | None) -> None:
    assert parse_query(text, (3, 5), 2, True) == expected


@pytest.mark.parametrize("text, message", [
    ("3,0", "patch row 3 is out of range: there are 3"), ("0,5", "patch column 5 is out of range: there are 5"),
    ("1,2,3", "'1,2,3' is not a patch R,C"), ("17", "token 17 is out of range: there are 17"),
    ("x", "'x' is not a token index, R,C, cls or all"), ("a,1", "'a' is not a patch row/column"),
])
def test_parse_query_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_query(text, (3, 5), 2, True)


def test_query_cls_needs_a_class_token() -> None:
    with pytest.raises(ValueError, match="no class token"):
        parse_query("cls", (2, 2), 0, False)
    assert parse_query("0,1", (2, 2), 0, False) == [1]  # no prefix: patch (0, 1) is token 1


def test_token_names() -> None:
    names = prefix_names(True, True, 2)
    assert names == ["cls", "dist", "reg0", "reg1"] and prefix_names(False, False, 1) == ["reg0"]
    assert [token_name(t, (3, 5), 4, names) for t in (0, 1, 3, 4, 10, 18)] == [
        "cls", "dist", "reg1", "patch (0, 0)", "patch (1, 1)", "patch (2, 4)"]
