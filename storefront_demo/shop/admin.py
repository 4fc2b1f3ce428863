from django.contrib import admin

from .models import Brand, Category, Order, OrderLine, Product


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    search_fields = ["name"]


@admin.register(Brand)
class BrandAdmin(admin.ModelAdmin):
    list_display = ["name"]
    search_fields = ["name"]


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ["name", "sku", "category", "brand", "price", "in_stock"]
    list_filter = ["in_stock", "category", "brand"]
    list_select_related = ["category", "brand"]
    search_fields = ["name", "sku", "description"]
    list_editable = ["in_stock"]
    autocomplete_fields = ["category", "brand"]


class OrderLineInline(admin.TabularInline):
    model = OrderLine
    extra = 0
    raw_id_fields = ["product"]


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ["__str__", "user", "visitor_id", "created_at", "total"]
    list_select_related = ["user"]
    date_hierarchy = "created_at"
    inlines = [OrderLineInline]
    raw_id_fields = ["user"]
