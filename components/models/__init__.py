"""One home per model format: builders with their preprocessing, saving, loading.

`keras` holds the Keras registry (scratch CNNs and keras.applications, built from the names in
`components.spec`) and the keras Model artifact's save and load; `transformers` holds the
Hugging Face checkpoint side (image processor config -> `Preprocessing`, model inputs) and the
transformers Model artifact's save and load; `loading` is the one `Classifier` interface that
evaluate and predict use, dispatching on the card's framework; `prediction` is how evaluation
predicts a split, and the test split's predictions a Model keeps from its training.

May import: `components.spec` and `components.common` only (TensorFlow, Keras and torch are
imported inside the functions that need them).
"""
