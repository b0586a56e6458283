"""Template reading: substitutions and clear errors for what cannot run."""

from __future__ import annotations

import pytest

from local_runtime.template import LocalTemplate, TemplateError, substitute


def test_substitutions_are_applied_inside_json_strings():
    text = '{"Resource": "${Fn}", "Table": "${T}"}'
    assert substitute(text, {"Fn": "arn:aws:lambda:r:1:function:F", "T": 'a"b'}, where="x") == (
        '{"Resource": "arn:aws:lambda:r:1:function:F", "Table": "a\\"b"}'
    )


def test_an_undefined_substitution_names_the_key_and_the_file():
    with pytest.raises(TemplateError, match=r"flow.json\): \$\{Missing\} has no DefinitionSubstitutions entry"):
        substitute('{"x": "${Missing}"}', {}, where="Flow (flow.json)")


def test_fixture_template_resolves_functions_and_state_machines(fixture_template):
    template = LocalTemplate.load(fixture_template, parameter_overrides={"FlakyFailures": "5"})
    flaky = template.function("FlakyFunction")
    assert flaky.environment["FLAKY_FAILURES"] == "5"
    assert flaky.environment["ATTEMPTS_TABLE"] == "AttemptsTable"
    assert flaky.timeout == 30
    assert flaky.layer_dirs[0].name == "resilience"
    assert template.function("SlowFunction").timeout == 60
    retry = template.state_machine("RetryFlow")
    call = retry.definition["States"]["Call flaky dependency"]
    assert call["Parameters"]["FunctionName"] == "arn:aws:lambda:us-east-1:123456789012:function:FlakyFunction"
    assert template.state_machine("TimeoutFlow").type == "EXPRESS"


def test_unknown_parameter_overrides_are_refused(fixture_template):
    with pytest.raises(TemplateError, match="unknown parameter"):
        LocalTemplate.load(fixture_template, parameter_overrides={"NoSuchParameter": "1"})


def test_unknown_names_list_what_exists(fixture_template):
    template = LocalTemplate.load(fixture_template)
    with pytest.raises(TemplateError, match="state machines: BackoffFlow, DynamoFidelityFlow, GatedFlow, MapFlow"):
        template.state_machine("Nope")
    with pytest.raises(TemplateError, match="functions: FlakyFunction"):
        template.function("Nope")
