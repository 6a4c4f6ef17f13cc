"""The execution spine: approved action intents become effects in the world, once, through connectors."""
