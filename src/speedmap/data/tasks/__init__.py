"""Built-in benchmark tasks, generated locally and deterministically (nothing is downloaded)."""

from speedmap.data.tasks.builtin import DEFAULT_TASK, TASKS, Task
from speedmap.data.tasks.make import default_imgsz, make_task

__all__ = ["DEFAULT_TASK", "TASKS", "Task", "default_imgsz", "make_task"]
