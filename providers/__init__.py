"""Built-in providers. Each registers under the ``nestcloud.providers`` entry-point group and is
imported only when asked for, so its cloud SDK is never loaded at nestcloud import time."""
