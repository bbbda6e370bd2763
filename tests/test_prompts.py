"""prompts.py: every template declares its variables and renders with them; undefined ones raise."""

import pytest

from mathforge import prompts


@pytest.mark.parametrize("name", prompts.template_names())
def test_every_template_renders_with_its_declared_variables(name):
    variables = prompts.declared_variables(name)
    text = prompts.render(name, **{v: f"VALUE_OF_{v}" for v in variables})
    for variable in variables:
        assert f"VALUE_OF_{variable}" in text, f"{name} declares {variable} but does not use it"


@pytest.mark.parametrize("name", prompts.template_names())
def test_missing_variable_raises(name):
    if prompts.declared_variables(name):
        with pytest.raises(ValueError, match=name):
            prompts.render(name)


def test_unknown_template_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="no_such_prompt"):
        prompts.render("no_such_prompt")
