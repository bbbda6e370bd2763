"""records.py: each pydantic model and its pyarrow schema stay in step."""

import types
import typing

import pyarrow as pa
import pytest

from mathforge import records

SCALARS = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}


def _arrow_type(annotation) -> tuple[pa.DataType, bool]:
    """The pyarrow type and nullability a pydantic annotation maps to."""
    nullable = False
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        nullable = True
        (annotation,) = [a for a in args if a is not type(None)]
    if typing.get_origin(annotation) is typing.Literal:
        return pa.string(), nullable
    if typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation)
        return pa.list_(records.MESSAGE_TYPE if item is records.Message else SCALARS[item]), nullable
    return SCALARS[annotation], nullable


@pytest.mark.parametrize("model,schema", list(records.SCHEMAS.items()), ids=lambda x: getattr(x, "__name__", ""))
def test_model_and_schema_declare_the_same_columns(model, schema):
    fields = model.model_fields
    assert list(fields) == schema.names
    for name, info in fields.items():
        arrow_type, nullable = _arrow_type(info.annotation)
        assert schema.field(name).type == arrow_type, name
        assert schema.field(name).nullable == nullable, name


def test_to_table_fills_optional_columns_and_rejects_missing_required():
    problem = records.Problem(problem_id="p1", problem="1+1?", answer="2", source="t")
    table = records.to_table([problem], records.PROBLEM_SCHEMA)
    assert table.column("solution").to_pylist() == [None]
    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError, KeyError, ValueError)):
        records.to_table([{"problem_id": "p"}], records.PROBLEM_SCHEMA)


def test_conform_refuses_undeclared_columns():
    table = pa.table({"problem_id": ["a"], "problem": ["x"], "answer": ["1"], "source": ["s"], "mystery": [1]})
    with pytest.raises(ValueError, match="mystery"):
        records.conform(table, records.PROBLEM_SCHEMA)


def test_models_reject_unknown_fields():
    with pytest.raises(Exception, match="extra"):
        records.Problem(problem_id="p", problem="x", answer="1", source="s", metadata={})
