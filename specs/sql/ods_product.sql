-- The catalogue as of the end of each day ds from start_ds to end_ds: per day, the latest version of
-- every product recorded by then. A range template: a batch of days reads the file once.
SELECT p.product_id, p.product_name, p.category, p.brand, p.price, p.updated_at, d.ds
FROM read_csv({{ source(params.source_dir ~ '/products.csv') }}, header = true, auto_detect = false,
              columns = {'product_id': 'BIGINT', 'product_name': 'VARCHAR', 'category': 'VARCHAR',
                         'brand': 'VARCHAR', 'price': 'DECIMAL(18,2)', 'updated_at': 'TIMESTAMP'}) AS p
JOIN (SELECT CAST(range AS DATE) AS ds
      FROM range(DATE '{{ start_ds }}', DATE '{{ end_ds }}' + INTERVAL 1 DAY, INTERVAL 1 DAY)) AS d
    ON CAST(p.updated_at AS DATE) <= d.ds
QUALIFY row_number() OVER (PARTITION BY d.ds, p.product_id ORDER BY p.updated_at DESC) = 1
