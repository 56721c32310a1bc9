B
y_two_axesJæwÿE