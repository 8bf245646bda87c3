"""softscope: train soft prompts on any Hugging Face causal LM and read what they mean.

The Python API in brief::

    from softscope import TrainConfig, train, load_model, project, SoftPrompt
    adapter = load_model("smollm2-135m")
    result = train(TrainConfig(task="sst2", tokens=7, steps=300), "runs/sst2", adapter=adapter)
    print(project(adapter, result.prompt.tensor, "cos").text)
"""

from .engine.config import ModelOptions, TaskOptions, TrainConfig
from .engine.errors import SoftscopeError
from .engine.models import ModelAdapter, load_model
from .engine.projection import project
from .engine.prompts import SoftPrompt, export_peft, import_peft
from .engine.training import evaluate, train

__all__ = ["ModelOptions", "TaskOptions", "TrainConfig", "SoftscopeError", "ModelAdapter", "load_model", "project",
           "SoftPrompt", "export_peft", "import_peft", "evaluate", "train"]
__version__ = "0.1.0"
