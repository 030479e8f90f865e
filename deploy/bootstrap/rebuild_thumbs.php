<?php
/**
 * Rebuilds PrestaShop 8 thumbnails from the CLI, the way the back office's "Regenerate
 * thumbnails" does (AdminImagesController::_regenerateThumbnails), without its time limit.
 * On 9.1+ presta-ctl uses `bin/console prestashop:thumbnails:regenerate` instead.
 *
 * Run inside the container as www-data, from the docroot:
 *   php -d memory_limit=-1 /tmp/rebuild_thumbs.php [all|products|categories|manufacturers|suppliers|stores]
 * Only missing thumbnails are created; existing ones are kept.
 */
if (PHP_SAPI !== 'cli') {
    http_response_code(404);
    exit;
}
$root = getcwd();
if (!is_file($root . '/config/config.inc.php')) {
    fwrite(STDERR, "run me from the PrestaShop docroot (/var/www/html)\n");
    exit(1);
}
require $root . '/config/config.inc.php';

$wanted = $argv[1] ?? 'all';
$kinds = [
    'categories' => _PS_CAT_IMG_DIR_,
    'manufacturers' => _PS_MANU_IMG_DIR_,
    'suppliers' => _PS_SUPP_IMG_DIR_,
    'stores' => _PS_STORE_IMG_DIR_,
    'products' => _PS_PRODUCT_IMG_DIR_,
];
if ($wanted !== 'all' && !isset($kinds[$wanted])) {
    fwrite(STDERR, "unknown type '$wanted': all, " . implode(', ', array_keys($kinds)) . "\n");
    exit(2);
}

$made = 0;
$failed = 0;

/** Resizes $src into $dst unless $dst exists. */
function thumb($src, $dst, array $type, &$made, &$failed)
{
    if (!is_file($src) || is_file($dst)) {
        return;
    }
    if (ImageManager::resize($src, $dst, (int) $type['width'], (int) $type['height'])) {
        ++$made;
    } else {
        ++$failed;
        fwrite(STDERR, "cannot resize $src to $dst\n");
    }
}

foreach ($kinds as $kind => $dir) {
    if ($wanted !== 'all' && $wanted !== $kind) {
        continue;
    }
    $types = ImageType::getImagesTypes($kind);
    if ($kind === 'products') {
        foreach (Image::getAllImages() as $row) {
            $image = new Image((int) $row['id_image']);
            $base = $dir . $image->getExistingImgPath();
            foreach ($types as $type) {
                thumb($base . '.jpg', $base . '-' . stripslashes($type['name']) . '.jpg', $type, $made, $failed);
            }
        }
        continue;
    }
    foreach (scandir($dir) ?: [] as $file) {
        if (!preg_match('/^(\d+)\.jpg$/', $file, $m)) {
            continue;
        }
        foreach ($types as $type) {
            thumb($dir . $file, $dir . $m[1] . '-' . stripslashes($type['name']) . '.jpg', $type, $made, $failed);
        }
    }
}
echo "thumbnails created: $made, failed: $failed\n";
exit($failed > 0 ? 1 : 0);
