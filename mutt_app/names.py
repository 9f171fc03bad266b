"""Names MUTT shares across layers: tasks, queues, lanes, held reasons, roles."""
