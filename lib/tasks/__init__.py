"""The task registry: importing this package registers every task unit (one module each)."""
from lib.tasks import completion, den, est, gen  # noqa: F401  (registration)
from lib.tasks.base import TASKS, Context, Prepared, Task, TaskUnit, options_from, register_task

__all__ = ["TASKS", "Context", "Prepared", "Task", "TaskUnit", "options_from", "register_task"]
