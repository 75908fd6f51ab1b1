"""The five tabs (Data, Train, Predict, Evaluate, Runs) and the panels that live inside them (the Train
form, the bake-off, the dataset doctor, Compare). A tab says what to run and what to show."""
