"""One codemod per module; each is a LibCST transformer named after the behaviour it implements."""
