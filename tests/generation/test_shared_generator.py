"""One shared model backend per process: asking for another model releases the one held."""

from mathforge import generation
from mathforge.generation import ModelConfig, release_shared_generators, shared_generator


class Closable:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_another_model_releases_the_held_one():
    server = {"base_url": "http://127.0.0.1:9/v1"}  # never contacted: building a client sends nothing
    first = shared_generator(ModelConfig(backend="openai", model="a", server=server))
    assert shared_generator(ModelConfig(backend="openai", model="a", server=server)) is first
    held = Closable()
    generation._SHARED[next(iter(generation._SHARED))] = held  # stands in for an engine with close()
    second = shared_generator(ModelConfig(backend="openai", model="b", server=server))
    assert held.closed and list(generation._SHARED.values()) == [second]
    release_shared_generators()
    assert generation._SHARED == {}


def test_additional_models_do_not_change_the_main_models_key():
    main = generation.GenerationConfig(backend="scripted", model="m")
    more = generation.GenerationConfig(backend="scripted", model="m", additional=[{"backend": "scripted", "model": "x"}])
    assert main.model_key() == more.model_key() == more.primary().model_key()
    assert [m.model for m in more.models()] == ["m", "x"]
