"""The task registry: importing this package registers every task unit (one module each)."""
from lib.tasks import completion, den, est, gen  # noqa: F401  (registration)
from lib.tasks.base import TASKS, BuiltTask, EvalInputs, Task, TaskDefinition, options_from, register_task

__all__ = ["TASKS", "EvalInputs", "BuiltTask", "Task", "TaskDefinition", "options_from", "register_task"]
