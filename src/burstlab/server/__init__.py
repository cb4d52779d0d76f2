"""OpenAI-compatible mock servers: the embedded targets for ``burstlab bench`` and the demo."""
