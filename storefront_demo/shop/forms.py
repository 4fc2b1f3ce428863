from django import forms
from django.contrib.auth.forms import UserCreationForm


class SignupForm(UserCreationForm):
    email = forms.EmailField(required=False, help_text="Optional.")

    class Meta(UserCreationForm.Meta):
        fields = ("username", "email")


class QuantityForm(forms.Form):
    quantity = forms.IntegerField(min_value=0, max_value=99, initial=1)
